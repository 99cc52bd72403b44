// HDF5 helpers over the C++ API. Every failure becomes a csr::Error naming
// the file and the dataset, never an HDF5 error stack on the terminal.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <H5Cpp.h>
#include <opencv2/core.hpp>

namespace csr::h5 {

// Debian's libhdf5 C library is built thread-safe, but the C++ API on top of
// it (H5::H5File, H5::Exception, the reference counting of ids) is outside
// HDF5's thread-safety guarantee, and matio calls HDF5 for v7.3 files under a
// lock of its own. Two threads in there at once crashed gt_gen on the error
// paths of a full disk. So every HDF5 call in this project, and every matio
// call, runs under this one process-wide recursive lock (one lock for both
// libraries: no lock order to get wrong). Hold a Lock for the whole life of
// any H5 object (H5::H5File, DataSet, ... close themselves in their
// destructors, also while an exception unwinds): declare it before them in
// the same scope. Every helper below but QuietErrors CSR_ASSERTs that it is held.
class Lock {
 public:
  Lock();
  ~Lock();
  Lock(const Lock&) = delete;
  Lock& operator=(const Lock&) = delete;
};

// Whether the calling thread holds the HDF5 lock.
bool LockHeld();

// Silences HDF5's automatic error printing for the calling thread (a per-thread
// setting in thread-safe builds); cheap and idempotent, the helpers call it.
void QuietErrors();

// Opens an existing file read-only. Throws csr::Error("path", "not an HDF5
// file or corrupt") on failure.
H5::H5File OpenRead(const std::string& path);
// Creates (truncates) a file for writing.
H5::H5File Create(const std::string& path);

bool Exists(const H5::Group& loc, const std::string& name);

// Writes a 2-D (single channel) or 3-D (H x W x C, multi-channel) matrix.
// Supported depths: CV_8U, CV_32F, CV_64F.
void WriteMat(H5::Group& loc, const std::string& name, const cv::Mat& m);

// Reads a 2-D dataset as CV_32F (float32 and float64 accepted), or a 3-D
// uint8 dataset as CV_8UC(C). `file` is only used in error messages.
cv::Mat ReadMat2f(const H5::Group& loc, const std::string& name, const std::string& file);
cv::Mat ReadMat(const H5::Group& loc, const std::string& name, const std::string& file);

// Reads an N-D numeric dataset (any rank) as float32, with its shape.
std::vector<float> ReadFloats(const H5::Group& loc, const std::string& name, const std::string& file,
                              std::vector<hsize_t>* shape);
void WriteFloats(H5::Group& loc, const std::string& name, const float* data, const std::vector<hsize_t>& shape);

// Scalar attributes on a dataset, group or file root.
void SetAttr(H5::H5Object& obj, const std::string& name, double value);
void SetAttr(H5::H5Object& obj, const std::string& name, int64_t value);
void SetAttr(H5::H5Object& obj, const std::string& name, const std::string& value);
void SetAttr(H5::H5Object& obj, const std::string& name, const std::vector<int64_t>& value);
bool HasAttr(const H5::H5Object& obj, const std::string& name);
double GetAttrDouble(const H5::H5Object& obj, const std::string& name, const std::string& file);
int64_t GetAttrInt(const H5::H5Object& obj, const std::string& name, const std::string& file);
std::string GetAttrString(const H5::H5Object& obj, const std::string& name, const std::string& file);
std::vector<int64_t> GetAttrInts(const H5::H5Object& obj, const std::string& name, const std::string& file);

}  // namespace csr::h5
