#include "common/io/h5.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <utility>

#include "common/base/error.h"

// Every helper touches HDF5 (or identifiers whose Hid destructors do): the
// caller must hold h5::Lock, and not only for the call but for the ids' lives.
#define CSR_H5_LOCKED() CSR_ASSERT(::csr::h5::LockHeld(), "HDF5 used without holding h5::Lock (", __func__, ")")

namespace csr::h5 {
namespace {

std::recursive_mutex& GlobalMutex() {
  static std::recursive_mutex m;
  return m;
}

thread_local int t_lock_depth = 0;

// Collects LastError's message, innermost frame first: the system's reason
// (HDF5's file driver logs "errno = 28, error message = 'No space left on
// device'" deep in the stack, while the API frame only says "H5Fcreate
// failed") wins; otherwise the innermost description.
herr_t CollectError(unsigned n, const H5E_error2_t* err, void* data) {
  auto* out = static_cast<std::string*>(data);
  const std::string desc = err->desc != nullptr ? err->desc : "";
  const std::string key = "error message = '";
  if (const size_t p = desc.find(key); p != std::string::npos) {
    const size_t e = desc.find('\'', p + key.size());
    *out = desc.substr(p + key.size(), e == std::string::npos ? std::string::npos : e - p - key.size());
    return 1;  // stop: nothing more specific will follow
  }
  if (n == 0) *out = desc;
  return 0;
}

hid_t FileTypeFor(int depth) {
  switch (depth) {
    case CV_8U:
      return H5T_STD_U8LE;
    case CV_32F:
      return H5T_IEEE_F32LE;
    case CV_64F:
      return H5T_IEEE_F64LE;
    default:
      CSR_ASSERT(false, "h5::WriteMat: unsupported depth ", depth);
  }
  return -1;
}

hid_t MemTypeFor(int depth) {
  switch (depth) {
    case CV_8U:
      return H5T_NATIVE_UINT8;
    case CV_32F:
      return H5T_NATIVE_FLOAT;
    case CV_64F:
      return H5T_NATIVE_DOUBLE;
    default:
      CSR_ASSERT(false, "h5: unsupported depth ", depth);
  }
  return -1;
}

// The file holding `loc`, for error messages.
std::string FileOf(hid_t loc) {
  const ssize_t n = H5Fget_name(loc, nullptr, 0);
  if (n <= 0) return "HDF5 file";
  std::string name(static_cast<size_t>(n) + 1, '\0');
  H5Fget_name(loc, name.data(), name.size());
  name.resize(static_cast<size_t>(n));
  return name;
}

void WriteAttr(hid_t obj, const std::string& name, hid_t file_type, const Hid& space, hid_t mem_type,
               const void* data) {
  CSR_H5_LOCKED();
  QuietErrors();
  const std::string what = StrCat("cannot write attribute '", name, "'");
  Hid attr(H5Acreate2(obj, name.c_str(), file_type, space.get(), H5P_DEFAULT, H5P_DEFAULT));
  if (!attr.valid()) Fail(FileOf(obj), what);
  // HDF5 rejects a null buffer even for zero elements.
  if (data != nullptr && H5Awrite(attr.get(), mem_type, data) < 0) Fail(FileOf(obj), what);
}

// Limits of ReadMat: sides up to 2^20 and 2^29 elements (2 GB of float32).
constexpr hsize_t kMaxSide = hsize_t{1} << 20;
constexpr hsize_t kMaxElements = hsize_t{1} << 29;

Hid OpenDataset(hid_t loc, const std::string& name, const std::string& file) {
  QuietErrors();
  if (!Exists(loc, name)) throw Error(file, StrCat("missing dataset '", name, "'"));
  Hid ds(H5Dopen2(loc, name.c_str(), H5P_DEFAULT));
  if (!ds.valid()) Fail(file, StrCat("cannot open dataset '", name, "'"));
  return ds;
}

// The dimensions of a dataset's simple dataspace; Fail on a corrupt one.
std::vector<hsize_t> Dims(hid_t ds, const std::string& name, const std::string& file) {
  const std::string what = StrCat("cannot read dataset '", name, "' (corrupt or truncated?)");
  Hid space(CheckId(H5Dget_space(ds), file, what));
  const int rank = H5Sget_simple_extent_ndims(space.get());
  if (rank < 0) Fail(file, what);
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  if (rank > 0 && H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr) < 0) Fail(file, what);
  return dims;
}

Hid OpenAttr(hid_t obj, const std::string& name, const std::string& file) {
  CSR_H5_LOCKED();
  QuietErrors();
  if (!HasAttr(obj, name)) throw Error(file, StrCat("missing attribute '", name, "'"));
  Hid attr(H5Aopen(obj, name.c_str(), H5P_DEFAULT));
  if (!attr.valid()) Fail(file, StrCat("cannot read attribute '", name, "'"));
  return attr;
}

// Reads `n` elements of an attribute as `mem_type`, after checking it holds
// exactly `n`.
void ReadAttr(hid_t obj, const std::string& name, const std::string& file, hid_t mem_type, void* out, hssize_t n) {
  Hid attr = OpenAttr(obj, name, file);
  const std::string what = StrCat("cannot read attribute '", name, "'");
  Hid space(CheckId(H5Aget_space(attr.get()), file, what));
  if (H5Sget_simple_extent_npoints(space.get()) != n) {
    throw Error(file, StrCat("attribute '", name, "' does not hold ", n, " value(s)"));
  }
  CheckRc(H5Aread(attr.get(), mem_type, out), file, what);
}

}  // namespace

// ---------------------------------------------------------------- locking

Lock::Lock() {
  GlobalMutex().lock();
  ++t_lock_depth;
}

Lock::~Lock() {
  --t_lock_depth;
  GlobalMutex().unlock();
}

bool LockHeld() { return t_lock_depth > 0; }

void QuietErrors() {
  // HDF5's automatic error printing is a per-thread setting in thread-safe
  // builds, so every thread that calls HDF5 has to switch it off once.
  thread_local bool quiet = false;
  if (!quiet) {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    quiet = true;
  }
}

// ---------------------------------------------------------------- identifiers and errors

Hid::Hid(Hid&& other) noexcept : id_(std::exchange(other.id_, -1)), closer_(other.closer_) {}

Hid& Hid::operator=(Hid&& other) noexcept {
  if (this != &other) {
    Reset();
    id_ = std::exchange(other.id_, -1);
    closer_ = other.closer_;
  }
  return *this;
}

bool Hid::Close() {
  if (id_ < 0) return true;
  const herr_t rc = closer_(id_);
  id_ = -1;
  return rc >= 0;
}

void Hid::Reset() {
  if (id_ >= 0) closer_(id_);
  id_ = -1;
}

std::string LastError() {
  std::string msg;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, CollectError, &msg);
  return msg.empty() ? "HDF5 error" : msg;
}

void Fail(const std::string& file, const std::string& what) { throw Error(file, StrCat(what, ": ", LastError())); }

hid_t CheckId(hid_t id, const std::string& file, const std::string& what) {
  if (id < 0) Fail(file, what);
  return id;
}

void CheckRc(herr_t rc, const std::string& file, const std::string& what) {
  if (rc < 0) Fail(file, what);
}

Hid Space(const std::vector<hsize_t>& dims) {
  if (dims.empty()) return Hid(H5Screate(H5S_SCALAR));
  return Hid(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr));
}

// ---------------------------------------------------------------- files and datasets

Hid OpenRead(const std::string& path) {
  CSR_H5_LOCKED();
  QuietErrors();
  if (!std::filesystem::is_regular_file(path)) throw Error(path, "file not found");
  const std::string what = "cannot open as HDF5 (missing, corrupt or truncated)";
  const htri_t is_hdf5 = H5Fis_hdf5(path.c_str());
  if (is_hdf5 < 0) Fail(path, what);
  if (is_hdf5 == 0) throw Error(path, "not an HDF5 file (corrupt or truncated?)");
  return Hid(CheckId(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), path, what));
}

Hid Create(const std::string& path) {
  CSR_H5_LOCKED();
  QuietErrors();
  // HDF5 reports a failed open(2) as "H5Fcreate failed" without errno; create
  // the file first so the message says why (permission, read-only, no space).
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0666);
  if (fd < 0) throw Error(path, StrCat("cannot create HDF5 file: ", std::strerror(errno)));
  ::close(fd);
  return Hid(
      CheckId(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), path, "cannot create HDF5 file"));
}

bool Exists(hid_t loc, const std::string& name) {
  CSR_H5_LOCKED();
  QuietErrors();
  return H5Lexists(loc, name.c_str(), H5P_DEFAULT) > 0;
}

void WriteMat(hid_t loc, const std::string& name, const cv::Mat& m) {
  CSR_H5_LOCKED();
  CSR_ASSERT(m.isContinuous() && m.dims == 2, "WriteMat wants a continuous 2-D cv::Mat");
  QuietErrors();
  std::vector<hsize_t> dims = {static_cast<hsize_t>(m.rows), static_cast<hsize_t>(m.cols)};
  if (m.channels() > 1) dims.push_back(static_cast<hsize_t>(m.channels()));
  if (Exists(loc, name)) throw Error(FileOf(loc), StrCat("dataset '", name, "' already exists"));
  const std::string what = StrCat("cannot write dataset '", name, "' (disk full?)");
  const Hid space = Space(dims);
  // Contiguous, as the original's h5py files.
  Hid ds(H5Dcreate2(loc, name.c_str(), FileTypeFor(m.depth()), space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
  if (!ds.valid()) Fail(FileOf(loc), what);
  if (m.total() > 0 && H5Dwrite(ds.get(), MemTypeFor(m.depth()), H5S_ALL, H5S_ALL, H5P_DEFAULT, m.data) < 0) {
    Fail(FileOf(loc), what);
  }
}

cv::Mat ReadMat(hid_t loc, const std::string& name, const std::string& file) {
  CSR_H5_LOCKED();
  const Hid ds = OpenDataset(loc, name, file);
  const std::string what = StrCat("cannot read dataset '", name, "' (corrupt or truncated?)");
  const std::vector<hsize_t> shape = Dims(ds.get(), name, file);
  const int rank = static_cast<int>(shape.size());
  if (rank != 2 && rank != 3) throw Error(file, StrCat("dataset '", name, "' has rank ", rank, ", expected 2 or 3"));
  const hsize_t dims[3] = {shape[0], shape[1], rank == 3 ? shape[2] : 1};
  const Hid type(CheckId(H5Dget_type(ds.get()), file, what));
  const H5T_class_t cls = H5Tget_class(type.get());
  const size_t size = H5Tget_size(type.get());
  int depth;
  if (cls == H5T_FLOAT) {
    depth = size == 8 ? CV_64F : CV_32F;
    if (rank == 3) throw Error(file, StrCat("dataset '", name, "' is a 3-D float array, expected 2-D"));
  } else if (cls == H5T_INTEGER && size == 1) {
    depth = CV_8U;
  } else {
    throw Error(file, StrCat("dataset '", name, "' has an unsupported element type"));
  }
  if (dims[2] < 1 || dims[2] > 4) throw Error(file, StrCat("dataset '", name, "' has ", dims[2], " channels"));
  const int channels = static_cast<int>(dims[2]);
  // A dataset's shape costs nothing to forge (an unwritten chunked dataset
  // of any size is a few hundred bytes): refuse one no image can have
  // before cv::Mat allocates it.
  if (dims[0] > kMaxSide || dims[1] > kMaxSide || dims[0] * dims[1] * dims[2] > kMaxElements) {
    throw Error(file, StrCat("dataset '", name, "' claims ", dims[0], " x ", dims[1], " x ", dims[2],
                             " elements, more than any supported image (corrupt file?)"));
  }
  cv::Mat m(static_cast<int>(dims[0]), static_cast<int>(dims[1]), CV_MAKETYPE(depth, channels));
  if (m.total() > 0) CheckRc(H5Dread(ds.get(), MemTypeFor(depth), H5S_ALL, H5S_ALL, H5P_DEFAULT, m.data), file, what);
  return m;
}

cv::Mat ReadMat2f(hid_t loc, const std::string& name, const std::string& file) {
  CSR_H5_LOCKED();
  cv::Mat m = ReadMat(loc, name, file);
  if (m.channels() != 1 || m.depth() == CV_8U) {
    throw Error(file, StrCat("dataset '", name, "' is not a 2-D float array"));
  }
  if (m.depth() == CV_64F) m.convertTo(m, CV_32F);
  return m;
}

std::vector<float> ReadFloats(hid_t loc, const std::string& name, const std::string& file,
                              std::vector<hsize_t>* shape) {
  CSR_H5_LOCKED();
  const Hid ds = OpenDataset(loc, name, file);
  const std::string what = StrCat("cannot read dataset '", name, "' (corrupt or truncated?)");
  const Hid type(CheckId(H5Dget_type(ds.get()), file, what));
  const H5T_class_t cls = H5Tget_class(type.get());
  if (cls != H5T_FLOAT && cls != H5T_INTEGER) throw Error(file, StrCat("dataset '", name, "' is not numeric"));
  const std::vector<hsize_t> dims = Dims(ds.get(), name, file);
  // A declared shape is data: bound it before allocating (the largest
  // CSRNet tensor has 2.4 M elements; 2^28 floats is 1 GiB).
  constexpr hsize_t kMaxFloats = hsize_t{1} << 28;
  hsize_t n = 1;
  for (hsize_t d : dims) {
    if (d != 0 && n > kMaxFloats / d) {
      throw Error(file, StrCat("dataset '", name, "' declares more than ", kMaxFloats, " elements (corrupt file?)"));
    }
    n *= d;
  }
  std::vector<float> out(n);
  if (n > 0) CheckRc(H5Dread(ds.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()), file, what);
  if (shape) *shape = dims;
  return out;
}

std::vector<std::string> ListNames(hid_t loc, const std::string& file) {
  CSR_H5_LOCKED();
  QuietErrors();
  const std::string what = "cannot list the file's contents (corrupt?)";
  H5G_info_t info{};
  CheckRc(H5Gget_info(loc, &info), file, what);
  std::vector<std::string> names;
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    const ssize_t n = H5Lget_name_by_idx(loc, ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
    if (n < 0) Fail(file, what);
    std::string name(static_cast<size_t>(n) + 1, '\0');
    if (H5Lget_name_by_idx(loc, ".", H5_INDEX_NAME, H5_ITER_INC, i, name.data(), name.size(), H5P_DEFAULT) < 0) {
      Fail(file, what);
    }
    name.resize(static_cast<size_t>(n));
    names.push_back(std::move(name));
  }
  return names;
}

std::vector<hsize_t> DatasetShape(hid_t loc, const std::string& name, const std::string& file) {
  CSR_H5_LOCKED();
  const Hid ds = OpenDataset(loc, name, file);
  return Dims(ds.get(), name, file);
}

void WriteFloats(hid_t loc, const std::string& name, const float* data, const std::vector<hsize_t>& shape) {
  CSR_H5_LOCKED();
  QuietErrors();
  if (Exists(loc, name)) throw Error(FileOf(loc), StrCat("dataset '", name, "' already exists"));
  const std::string what = StrCat("cannot write dataset '", name, "' (disk full?)");
  const Hid space = Space(shape);
  Hid ds(H5Dcreate2(loc, name.c_str(), H5T_IEEE_F32LE, space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
  if (!ds.valid() || H5Dwrite(ds.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) {
    Fail(FileOf(loc), what);
  }
}

// ---------------------------------------------------------------- attributes

void SetAttr(hid_t obj, const std::string& name, double value) {
  WriteAttr(obj, name, H5T_IEEE_F64LE, Space({}), H5T_NATIVE_DOUBLE, &value);
}

void SetAttr(hid_t obj, const std::string& name, int64_t value) {
  WriteAttr(obj, name, H5T_STD_I64LE, Space({}), H5T_NATIVE_INT64, &value);
}

void SetAttr(hid_t obj, const std::string& name, const std::string& value) {
  CSR_H5_LOCKED();
  // Variable-length UTF-8 string: h5py reads it back as a Python str.
  Hid type(H5Tcopy(H5T_C_S1));
  H5Tset_size(type.get(), H5T_VARIABLE);
  H5Tset_cset(type.get(), H5T_CSET_UTF8);
  const char* p = value.c_str();
  WriteAttr(obj, name, type.get(), Space({}), type.get(), &p);
}

void SetAttr(hid_t obj, const std::string& name, const std::vector<int64_t>& value) {
  WriteAttr(obj, name, H5T_STD_I64LE, Space({value.size()}), H5T_NATIVE_INT64, value.empty() ? nullptr : value.data());
}

bool HasAttr(hid_t obj, const std::string& name) {
  CSR_H5_LOCKED();
  QuietErrors();
  return H5Aexists(obj, name.c_str()) > 0;
}

double GetAttrDouble(hid_t obj, const std::string& name, const std::string& file) {
  double v = 0;
  ReadAttr(obj, name, file, H5T_NATIVE_DOUBLE, &v, 1);
  return v;
}

int64_t GetAttrInt(hid_t obj, const std::string& name, const std::string& file) {
  int64_t v = 0;
  ReadAttr(obj, name, file, H5T_NATIVE_INT64, &v, 1);
  return v;
}

std::string GetAttrString(hid_t obj, const std::string& name, const std::string& file) {
  const Hid attr = OpenAttr(obj, name, file);
  const std::string what = StrCat("cannot read attribute '", name, "'");
  const Hid type(CheckId(H5Aget_type(attr.get()), file, what));
  const Hid space(CheckId(H5Aget_space(attr.get()), file, what));
  if (H5Tget_class(type.get()) != H5T_STRING || H5Sget_simple_extent_npoints(space.get()) != 1) {
    throw Error(file, StrCat("attribute '", name, "' is not a single string"));
  }
  std::string out;
  if (H5Tis_variable_str(type.get()) > 0) {
    char* p = nullptr;
    CheckRc(H5Aread(attr.get(), type.get(), &p), file, what);
    if (p != nullptr) out = p;
    H5free_memory(p);
  } else {
    // A fixed-length string is stored inside its attribute message; its
    // declared width is still bounded before the buffer is allocated.
    const size_t n = H5Tget_size(type.get());
    if (n == 0 || n > (size_t{1} << 20)) throw Error(file, StrCat("attribute '", name, "' has a corrupt width"));
    std::vector<char> buf(n, '\0');
    CheckRc(H5Aread(attr.get(), type.get(), buf.data()), file, what);
    out.assign(buf.data(), n);
  }
  return out.substr(0, out.find('\0'));
}

std::vector<int64_t> GetAttrInts(hid_t obj, const std::string& name, const std::string& file) {
  const Hid attr = OpenAttr(obj, name, file);
  const std::string what = StrCat("cannot read attribute '", name, "'");
  const Hid space(CheckId(H5Aget_space(attr.get()), file, what));
  const hssize_t n = H5Sget_simple_extent_npoints(space.get());
  if (n < 0 || n > (hssize_t{1} << 24)) throw Error(file, StrCat("attribute '", name, "' has a corrupt size"));
  std::vector<int64_t> v(static_cast<size_t>(n));
  if (n > 0) CheckRc(H5Aread(attr.get(), H5T_NATIVE_INT64, v.data()), file, what);
  return v;
}

}  // namespace csr::h5
