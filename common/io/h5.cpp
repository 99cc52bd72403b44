#include "common/io/h5.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <mutex>

#include "common/base/error.h"

// Every helper touches HDF5 (or H5 objects whose destructors do): the caller
// must hold h5::Lock, and not only for the call but for the objects' lives.
#define CSR_H5_LOCKED() CSR_ASSERT(::csr::h5::LockHeld(), "HDF5 used without holding h5::Lock (", __func__, ")")

namespace csr::h5 {
namespace {

// The system error HDF5 recorded on this thread's error stack, if any: its
// file driver logs "errno = 28, error message = 'No space left on device'"
// deep in the stack, while the exception only says "H5Fcreate failed".
herr_t FindSystemError(unsigned, const H5E_error2_t* err, void* out) {
  const char* key = "error message = '";
  const char* at = err->desc != nullptr ? std::strstr(err->desc, key) : nullptr;
  auto* reason = static_cast<std::string*>(out);
  if (at != nullptr && reason->empty()) {
    const std::string rest = at + std::strlen(key);
    *reason = rest.substr(0, rest.find('\''));
  }
  return 0;
}

std::string Describe(const H5::Exception& e) {
  std::string msg = e.getDetailMsg();
  if (msg.empty()) msg = "HDF5 error";
  std::string system;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, FindSystemError, &system);
  return system.empty() ? msg : msg + ": " + system;
}

H5::PredType FileTypeFor(int depth) {
  switch (depth) {
    case CV_8U:
      return H5::PredType::STD_U8LE;
    case CV_32F:
      return H5::PredType::IEEE_F32LE;
    case CV_64F:
      return H5::PredType::IEEE_F64LE;
    default:
      throw std::invalid_argument("h5::WriteMat: unsupported depth");
  }
}

H5::PredType MemTypeFor(int depth) {
  switch (depth) {
    case CV_8U:
      return H5::PredType::NATIVE_UINT8;
    case CV_32F:
      return H5::PredType::NATIVE_FLOAT;
    case CV_64F:
      return H5::PredType::NATIVE_DOUBLE;
    default:
      throw std::invalid_argument("h5: unsupported depth");
  }
}

// The file holding `loc`, for error messages.
std::string FileOf(const H5::H5Location& loc) {
  try {
    return loc.getFileName();
  } catch (const H5::Exception&) {
    return "HDF5 file";
  }
}

// Errors name the file and the attribute: an H5::Exception escaping here is
// not a std::exception, so it would bypass RunTool and abort the tool.
void WriteAttr(H5::H5Object& obj, const std::string& name, const H5::DataType& file_type, const H5::DataSpace& space,
               const H5::DataType& mem_type, const void* data) {
  CSR_H5_LOCKED();
  QuietErrors();
  try {
    H5::Attribute a = obj.createAttribute(name, file_type, space);
    if (data) a.write(mem_type, data);  // HDF5 rejects a null buffer even for zero elements
  } catch (const H5::Exception& e) {
    throw Error(FileOf(obj), StrCat("cannot write attribute '", name, "': ", Describe(e)));
  }
}

// Limits of ReadMat: sides up to 2^20 and 2^29 elements (2 GB of float32).
constexpr hsize_t kMaxSide = hsize_t{1} << 20;
constexpr hsize_t kMaxElements = hsize_t{1} << 29;

H5::DataSet OpenDataset(const H5::Group& loc, const std::string& name, const std::string& file) {
  if (!Exists(loc, name)) throw Error(file, StrCat("missing dataset '", name, "'"));
  try {
    return loc.openDataSet(name);
  } catch (const H5::Exception& e) {
    throw Error(file, StrCat("cannot open dataset '", name, "': ", Describe(e)));
  }
}

std::recursive_mutex& GlobalMutex() {
  static std::recursive_mutex m;
  return m;
}

thread_local int t_lock_depth = 0;

}  // namespace

namespace {
// RunTool's line for an H5::Exception that escaped every conversion.
bool DescribeH5Exception(std::string* line) {
  try {
    throw;
  } catch (const H5::Exception& e) {
    *line = "HDF5: " + e.getFuncName() + ": " + e.getDetailMsg();
    return true;
  } catch (...) {
    return false;
  }
}
}  // namespace

Lock::Lock() {
  // Every HDF5 call runs under a Lock, so no H5::Exception can be thrown
  // before this registration.
  static const bool registered = (AddExceptionDescriber(&DescribeH5Exception), true);
  (void)registered;
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
    H5::Exception::dontPrint();
    quiet = true;
  }
}

H5::H5File OpenRead(const std::string& path) {
  CSR_H5_LOCKED();
  QuietErrors();
  if (!std::filesystem::is_regular_file(path)) throw Error(path, "file not found");
  try {
    if (!H5::H5File::isHdf5(path.c_str())) throw Error(path, "not an HDF5 file (corrupt or truncated?)");
    return H5::H5File(path, H5F_ACC_RDONLY);
  } catch (const H5::Exception& e) {
    throw Error(path, StrCat("cannot open as HDF5 (missing, corrupt or truncated): ", Describe(e)));
  }
}

H5::H5File Create(const std::string& path) {
  CSR_H5_LOCKED();
  QuietErrors();
  // HDF5 reports a failed open(2) as "H5Fcreate failed" without errno; create
  // the file first so the message says why (permission, read-only, no space).
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0666);
  if (fd < 0) throw Error(path, StrCat("cannot create HDF5 file: ", std::strerror(errno)));
  ::close(fd);
  try {
    return H5::H5File(path, H5F_ACC_TRUNC);
  } catch (const H5::Exception& e) {
    throw Error(path, StrCat("cannot create HDF5 file: ", Describe(e)));
  }
}

bool Exists(const H5::Group& loc, const std::string& name) {
  CSR_H5_LOCKED();
  QuietErrors();
  return H5Lexists(loc.getId(), name.c_str(), H5P_DEFAULT) > 0;
}

void WriteMat(H5::Group& loc, const std::string& name, const cv::Mat& m) {
  CSR_H5_LOCKED();
  CSR_ASSERT(m.isContinuous() && m.dims == 2, "WriteMat wants a continuous 2-D cv::Mat");
  const int channels = m.channels();
  std::vector<hsize_t> dims = {static_cast<hsize_t>(m.rows), static_cast<hsize_t>(m.cols)};
  if (channels > 1) dims.push_back(static_cast<hsize_t>(channels));
  H5::DataSpace space(static_cast<int>(dims.size()), dims.data());
  H5::DSetCreatPropList props;  // contiguous, as the original's h5py files
  if (Exists(loc, name)) throw Error(FileOf(loc), StrCat("dataset '", name, "' already exists"));
  try {
    H5::DataSet ds = loc.createDataSet(name, FileTypeFor(m.depth()), space, props);
    ds.write(m.data, MemTypeFor(m.depth()));
  } catch (const H5::Exception& e) {
    throw Error(FileOf(loc), StrCat("cannot write dataset '", name, "': ", Describe(e), " (disk full?)"));
  }
}

cv::Mat ReadMat(const H5::Group& loc, const std::string& name, const std::string& file) {
  CSR_H5_LOCKED();
  H5::DataSet ds = OpenDataset(loc, name, file);
  try {
    H5::DataSpace space = ds.getSpace();
    const int rank = space.getSimpleExtentNdims();
    if (rank != 2 && rank != 3) throw Error(file, StrCat("dataset '", name, "' has rank ", rank, ", expected 2 or 3"));
    hsize_t dims[3] = {0, 0, 1};
    space.getSimpleExtentDims(dims);
    const H5T_class_t cls = ds.getTypeClass();
    int depth;
    if (cls == H5T_FLOAT) {
      depth = ds.getFloatType().getSize() == 8 ? CV_64F : CV_32F;
      if (rank == 3) throw Error(file, StrCat("dataset '", name, "' is a 3-D float array, expected 2-D"));
    } else if (cls == H5T_INTEGER && ds.getIntType().getSize() == 1) {
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
    if (m.total() > 0) ds.read(m.data, MemTypeFor(depth));
    return m;
  } catch (const H5::Exception& e) {
    throw Error(file, StrCat("cannot read dataset '", name, "' (corrupt or truncated?): ", Describe(e)));
  }
}

cv::Mat ReadMat2f(const H5::Group& loc, const std::string& name, const std::string& file) {
  CSR_H5_LOCKED();
  cv::Mat m = ReadMat(loc, name, file);
  if (m.channels() != 1 || m.depth() == CV_8U) {
    throw Error(file, StrCat("dataset '", name, "' is not a 2-D float array"));
  }
  if (m.depth() == CV_64F) m.convertTo(m, CV_32F);
  return m;
}

std::vector<float> ReadFloats(const H5::Group& loc, const std::string& name, const std::string& file,
                              std::vector<hsize_t>* shape) {
  CSR_H5_LOCKED();
  H5::DataSet ds = OpenDataset(loc, name, file);
  try {
    const H5T_class_t cls = ds.getTypeClass();
    if (cls != H5T_FLOAT && cls != H5T_INTEGER) throw Error(file, StrCat("dataset '", name, "' is not numeric"));
    H5::DataSpace space = ds.getSpace();
    const int rank = space.getSimpleExtentNdims();
    std::vector<hsize_t> dims(static_cast<size_t>(rank));
    if (rank > 0) space.getSimpleExtentDims(dims.data());
    // A declared shape is data: bound it before allocating (the largest
    // CSRNet tensor has 2.4 M elements; 2^28 floats is 1 GiB).
    constexpr hsize_t kMaxElements = hsize_t{1} << 28;
    hsize_t n = 1;
    for (hsize_t d : dims) {
      if (d != 0 && n > kMaxElements / d) {
        throw Error(file,
                    StrCat("dataset '", name, "' declares more than ", kMaxElements, " elements (corrupt file?)"));
      }
      n *= d;
    }
    std::vector<float> out(n);
    if (n > 0) ds.read(out.data(), H5::PredType::NATIVE_FLOAT);
    if (shape) *shape = dims;
    return out;
  } catch (const H5::Exception& e) {
    throw Error(file, StrCat("cannot read dataset '", name, "' (corrupt or truncated?): ", Describe(e)));
  }
}

void WriteFloats(H5::Group& loc, const std::string& name, const float* data, const std::vector<hsize_t>& shape) {
  CSR_H5_LOCKED();
  if (Exists(loc, name)) throw Error(FileOf(loc), StrCat("dataset '", name, "' already exists"));
  try {
    H5::DataSpace space(static_cast<int>(shape.size()), shape.data());
    H5::DataSet ds = loc.createDataSet(name, H5::PredType::IEEE_F32LE, space);
    ds.write(data, H5::PredType::NATIVE_FLOAT);
  } catch (const H5::Exception& e) {
    throw Error(FileOf(loc), StrCat("cannot write dataset '", name, "': ", Describe(e), " (disk full?)"));
  }
}

void SetAttr(H5::H5Object& obj, const std::string& name, double value) {
  CSR_H5_LOCKED();
  WriteAttr(obj, name, H5::PredType::IEEE_F64LE, H5::DataSpace(H5S_SCALAR), H5::PredType::NATIVE_DOUBLE, &value);
}

void SetAttr(H5::H5Object& obj, const std::string& name, int64_t value) {
  CSR_H5_LOCKED();
  WriteAttr(obj, name, H5::PredType::STD_I64LE, H5::DataSpace(H5S_SCALAR), H5::PredType::NATIVE_INT64, &value);
}

void SetAttr(H5::H5Object& obj, const std::string& name, const std::string& value) {
  CSR_H5_LOCKED();
  // Variable-length UTF-8 string: h5py reads it back as a Python str.
  H5::StrType type(H5::PredType::C_S1, H5T_VARIABLE);
  type.setCset(H5T_CSET_UTF8);
  const char* p = value.c_str();
  WriteAttr(obj, name, type, H5::DataSpace(H5S_SCALAR), type, &p);
}

void SetAttr(H5::H5Object& obj, const std::string& name, const std::vector<int64_t>& value) {
  CSR_H5_LOCKED();
  hsize_t n = value.size();
  WriteAttr(obj, name, H5::PredType::STD_I64LE, H5::DataSpace(1, &n), H5::PredType::NATIVE_INT64,
            value.empty() ? nullptr : value.data());
}

bool HasAttr(const H5::H5Object& obj, const std::string& name) {
  CSR_H5_LOCKED();
  return obj.attrExists(name);
}

namespace {
H5::Attribute OpenAttr(const H5::H5Object& obj, const std::string& name, const std::string& file) {
  if (!obj.attrExists(name)) throw Error(file, StrCat("missing attribute '", name, "'"));
  return obj.openAttribute(name);
}
}  // namespace

double GetAttrDouble(const H5::H5Object& obj, const std::string& name, const std::string& file) {
  CSR_H5_LOCKED();
  try {
    H5::Attribute a = OpenAttr(obj, name, file);
    double v = 0;
    a.read(H5::PredType::NATIVE_DOUBLE, &v);
    return v;
  } catch (const H5::Exception& e) {
    throw Error(file, StrCat("cannot read attribute '", name, "': ", Describe(e)));
  }
}

int64_t GetAttrInt(const H5::H5Object& obj, const std::string& name, const std::string& file) {
  CSR_H5_LOCKED();
  try {
    H5::Attribute a = OpenAttr(obj, name, file);
    int64_t v = 0;
    a.read(H5::PredType::NATIVE_INT64, &v);
    return v;
  } catch (const H5::Exception& e) {
    throw Error(file, StrCat("cannot read attribute '", name, "': ", Describe(e)));
  }
}

std::string GetAttrString(const H5::H5Object& obj, const std::string& name, const std::string& file) {
  CSR_H5_LOCKED();
  try {
    H5::Attribute a = OpenAttr(obj, name, file);
    H5::StrType type = a.getStrType();
    std::string out;
    a.read(type, out);
    return out;
  } catch (const H5::Exception& e) {
    throw Error(file, StrCat("cannot read attribute '", name, "': ", Describe(e)));
  }
}

std::vector<int64_t> GetAttrInts(const H5::H5Object& obj, const std::string& name, const std::string& file) {
  CSR_H5_LOCKED();
  try {
    H5::Attribute a = OpenAttr(obj, name, file);
    const hssize_t n = a.getSpace().getSimpleExtentNpoints();
    std::vector<int64_t> v(static_cast<size_t>(n));
    if (n > 0) a.read(H5::PredType::NATIVE_INT64, v.data());
    return v;
  } catch (const H5::Exception& e) {
    throw Error(file, StrCat("cannot read attribute '", name, "': ", Describe(e)));
  }
}

}  // namespace csr::h5
