// The project's one HDF5 layer, over HDF5's C API: identifiers owned by
// h5::Hid, every failure a csr::Error naming the file and the object with
// the most specific reason on HDF5's error stack (the system's, such as "No
// space left on device", when there is one), never an error stack printed
// on the terminal. The shard format (common/shards), the .mat v7.3 reader
// (common/io/mat_io) and the helpers below for density maps and weight
// files all build on it.
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

namespace csr::h5 {

// HDF5 and matio (which calls HDF5 for v7.3 files under a lock of its own)
// are not safe to call from two threads at once: two threads in there
// crashed gt_gen on the error paths of a full disk. So every HDF5 call in
// this project, and every matio call, runs under this one process-wide
// recursive lock (one lock for both libraries: no lock order to get wrong).
// Hold a Lock for the whole life of any Hid (it closes its identifier in its
// destructor, also while an exception unwinds): declare it before them in
// the same scope. Every helper below but QuietErrors and LastError
// CSR_ASSERTs that it is held.
class Lock {
 public:
  Lock();
  ~Lock();
  Lock(const Lock&) = delete;
  Lock& operator=(const Lock&) = delete;
};

// Whether the calling thread holds the HDF5 lock.
bool LockHeld();

// Silences HDF5's automatic error printing for the calling thread (a
// per-thread setting in thread-safe builds); cheap and idempotent, the
// helpers call it.
void QuietErrors();

// Owns an HDF5 identifier (file, group, dataset, dataspace, datatype,
// attribute, property list) and closes it on destruction, with `closer`
// (H5Idec_ref, right for every kind, unless another is given). Move-only.
class Hid {
 public:
  Hid() = default;
  explicit Hid(hid_t id, herr_t (*closer)(hid_t) = H5Idec_ref) : id_(id), closer_(closer) {}
  ~Hid() { Reset(); }
  Hid(Hid&& other) noexcept;
  Hid& operator=(Hid&& other) noexcept;
  Hid(const Hid&) = delete;
  Hid& operator=(const Hid&) = delete;

  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  // Closes now and reports whether HDF5 succeeded: a file's last writes are
  // flushed here, so a full disk shows up as false.
  bool Close();

 private:
  void Reset();
  hid_t id_ = -1;
  herr_t (*closer_)(hid_t) = H5Idec_ref;
};

// The most specific message on this thread's HDF5 error stack: the system's
// reason when HDF5 recorded one, else the innermost description, else "HDF5
// error".
std::string LastError();
// Throws csr::Error(file, "<what>: <LastError()>").
[[noreturn]] void Fail(const std::string& file, const std::string& what);
// `id`, or Fail(file, what) when it is negative (HDF5's failure value).
hid_t CheckId(hid_t id, const std::string& file, const std::string& what);
// Fail(file, what) when `rc` is negative.
void CheckRc(herr_t rc, const std::string& file, const std::string& what);
// A simple dataspace of `dims` (a scalar one when `dims` is empty).
Hid Space(const std::vector<hsize_t>& dims);

// Opens an existing file read-only. Throws csr::Error naming the path when it
// is missing, not HDF5, corrupt or truncated.
Hid OpenRead(const std::string& path);
// Creates (truncates) a file for writing; the error says why (errno) when
// the file cannot be created.
Hid Create(const std::string& path);

// Whether `loc` (a file or group) has a link called `name`.
bool Exists(hid_t loc, const std::string& name);

// Writes a 2-D (single channel) or 3-D (H x W x C, multi-channel)
// contiguous dataset. Supported depths: CV_8U, CV_32F, CV_64F.
void WriteMat(hid_t loc, const std::string& name, const cv::Mat& m);

// Reads a 2-D dataset as CV_32F (float32 and float64 accepted), or a 3-D
// uint8 dataset as CV_8UC(C). `file` is only used in error messages.
cv::Mat ReadMat2f(hid_t loc, const std::string& name, const std::string& file);
cv::Mat ReadMat(hid_t loc, const std::string& name, const std::string& file);

// Reads an N-D numeric dataset (any rank) as float32, with its shape.
std::vector<float> ReadFloats(hid_t loc, const std::string& name, const std::string& file, std::vector<hsize_t>* shape);
void WriteFloats(hid_t loc, const std::string& name, const float* data, const std::vector<hsize_t>& shape);
// The names of the links in `loc` (a file or group), in name order.
std::vector<std::string> ListNames(hid_t loc, const std::string& file);
// The shape of dataset `name`, without reading it.
std::vector<hsize_t> DatasetShape(hid_t loc, const std::string& name, const std::string& file);

// Scalar attributes on a dataset, group or file root. Strings are written
// as variable-length UTF-8 (h5py reads them back as str).
void SetAttr(hid_t obj, const std::string& name, double value);
void SetAttr(hid_t obj, const std::string& name, int64_t value);
void SetAttr(hid_t obj, const std::string& name, const std::string& value);
void SetAttr(hid_t obj, const std::string& name, const std::vector<int64_t>& value);
bool HasAttr(hid_t obj, const std::string& name);
double GetAttrDouble(hid_t obj, const std::string& name, const std::string& file);
int64_t GetAttrInt(hid_t obj, const std::string& name, const std::string& file);
// Fixed- or variable-length, up to the first NUL.
std::string GetAttrString(hid_t obj, const std::string& name, const std::string& file);
std::vector<int64_t> GetAttrInts(hid_t obj, const std::string& name, const std::string& file);

}  // namespace csr::h5
