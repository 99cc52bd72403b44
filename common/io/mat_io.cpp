#include "common/io/mat_io.h"

#include <hdf5.h>
#include <matio.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <vector>

#include "common/base/error.h"
#include "common/base/fs.h"
#include "common/io/h5.h"
#include "common/io/mat5_check.h"

namespace csr {
namespace {

// matio keeps global state (its log callback), is not documented as
// thread-safe, and calls HDF5 for v7.3 files: every matio call in the process
// runs under the HDF5 lock (h5::Lock), one lock for both libraries, so that
// matio's HDF5 calls never overlap the project's own.
// Messages matio logged during the current locked call. matio reports
// problems (truncated zlib streams, bad tags) by logging and sometimes still
// returns a partial variable, so any message makes the read fail.
std::vector<std::string>* g_matio_log = nullptr;

void CaptureMatioLog(int level, char* message) {
  // Debug and plain messages are chatter; errors and warnings mean bad data.
  const int bad = MATIO_LOG_LEVEL_ERROR | MATIO_LOG_LEVEL_CRITICAL | MATIO_LOG_LEVEL_WARNING;
  if (g_matio_log != nullptr && (level & bad) != 0 && message != nullptr) g_matio_log->emplace_back(message);
}

// Holds the matio lock and collects what matio logs meanwhile, instead of
// letting it print to stderr.
class MatioSession {
 public:
  MatioSession() {
    static std::once_flag once;
    std::call_once(once, [] { Mat_LogInitFunc("csrnet", CaptureMatioLog); });
    // v7.3 files go through HDF5, whose error printing is per thread in the
    // thread-safe build: switch it off on this thread.
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    g_matio_log = &log_;
  }
  ~MatioSession() { g_matio_log = nullptr; }
  MatioSession(const MatioSession&) = delete;
  MatioSession& operator=(const MatioSession&) = delete;

  bool HasLog() const { return !log_.empty(); }
  std::string FirstLog() const { return log_.empty() ? std::string() : log_.front(); }

 private:
  h5::Lock lock_;  // first member: held until every other member is gone
  std::vector<std::string> log_;
};

struct MatFileCloser {
  void operator()(mat_t* m) const { Mat_Close(m); }
};
struct MatVarFreer {
  void operator()(matvar_t* v) const { Mat_VarFree(v); }
};
using MatFilePtr = std::unique_ptr<mat_t, MatFileCloser>;
using MatVarPtr = std::unique_ptr<matvar_t, MatVarFreer>;

enum class MatKind { kMat5, kMat73 };

constexpr char kHdf5Signature[] = "\x89HDF\r\n\x1a\n";
// matio reads v7.3 files when built with HDF5 (Debian's is); this is for a
// matio without it, or an HDF5 body that does not open.
constexpr const char* kV73Unreadable =
    "cannot open this MATLAB v7.3 (HDF5) .mat file (corrupt, truncated, or matio lacks HDF5 support): "
    "re-save it with -v7 or -v6";

uint32_t ReadU32(const unsigned char* p, bool swap) {
  uint32_t v = 0;
  std::memcpy(&v, p, 4);
  if (swap) v = (v >> 24) | ((v >> 8) & 0xff00u) | ((v << 8) & 0xff0000u) | (v << 24);
  return v;
}

bool HasHdf5SignatureAt(std::ifstream& f, std::streamoff offset) {
  char sig[8] = {};
  f.clear();
  f.seekg(offset);
  return f.read(sig, 8) && std::memcmp(sig, kHdf5Signature, 8) == 0;
}

// Walks the top-level data elements of a MAT5 file: each is an 8-byte tag
// (type, byte count) and its data. A truncated file ends inside an element,
// which this catches before matio would return a partial variable.
void CheckMat5Elements(std::ifstream& f, const std::string& path, uintmax_t size, bool swap) {
  uintmax_t offset = 128;
  while (offset < size) {
    if (size - offset < 8) throw Error(path, StrCat("truncated MAT-file: ", size - offset, " stray bytes at the end"));
    unsigned char tag[8];
    f.clear();
    f.seekg(static_cast<std::streamoff>(offset));
    if (!f.read(reinterpret_cast<char*>(tag), 8)) throw Error(path, "cannot read (I/O error)");
    const uint32_t type = ReadU32(tag, swap);
    const uint32_t nbytes = ReadU32(tag + 4, swap);
    if (type != 14 /*miMATRIX*/ && type != 15 /*miCOMPRESSED*/) {
      throw Error(path, StrCat("corrupt MAT-file: unexpected element type ", type, " at byte ", offset));
    }
    const uintmax_t end = offset + 8 + nbytes;
    if (end > size) {
      throw Error(path, StrCat("truncated MAT-file: a variable at byte ", offset, " needs ", end - offset,
                               " bytes but the file ends after ", size - offset));
    }
    offset = type == 14 ? std::min<uintmax_t>((end + 7) / 8 * 8, size) : end;  // miMATRIX is 8-byte padded
  }
}

// A v7.3 MAT-file is an HDF5 file behind a 512-byte user block holding the
// MATLAB header text.
MatKind CheckMat73Body(std::ifstream& f, const std::string& path) {
  for (std::streamoff at : {512, 1024, 2048}) {
    if (HasHdf5SignatureAt(f, at)) return MatKind::kMat73;
  }
  throw Error(path, "MATLAB v7.3 header but no HDF5 content (corrupt or truncated v7.3 MAT-file)");
}

// Checks what kind of file `path` is before matio sees it, so that every bad
// file gets a precise message (matio opens a 0-byte file as a "v4" file, and
// reads truncated compressed variables partially).
MatKind ProbeFile(const std::string& path) {
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (!fs::exists(st)) throw Error(path, "file not found");
  if (!fs::is_regular_file(st)) throw Error(path, "not a regular file");
  const uintmax_t size = fs::file_size(path, ec);
  if (ec) throw Error(path, StrCat("cannot read: ", ec.message()));
  if (size == 0) throw Error(path, "empty file (0 bytes), not a MAT-file");
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(path, "cannot open for reading");

  unsigned char header[128] = {};
  f.read(reinterpret_cast<char*>(header), sizeof(header));
  const auto got = static_cast<size_t>(f.gcount());
  const char* text = reinterpret_cast<const char*>(header);
  if (got >= 19 && std::memcmp(text, "MATLAB 7.3 MAT-file", 19) == 0) return CheckMat73Body(f, path);
  if (got >= 8 && std::memcmp(text, kHdf5Signature, 8) == 0) {
    throw Error(path, "an HDF5 file without a MATLAB header, not a MAT-file");
  }
  if (got < 128) throw Error(path, StrCat("not a MAT-file (only ", size, " bytes, shorter than a MAT-file header)"));

  const bool little = header[126] == 'I' && header[127] == 'M';
  const bool big = header[126] == 'M' && header[127] == 'I';
  if (!little && !big) {
    if (HasHdf5SignatureAt(f, 512)) return CheckMat73Body(f, path);  // v7.3 with a damaged header text
    throw Error(path, "not a MAT-file (no MATLAB 5 header)");
  }
  const unsigned version = little ? (header[124] | (header[125] << 8)) : ((header[124] << 8) | header[125]);
  if (version == 0x0200) return CheckMat73Body(f, path);
  if (version != 0x0100) throw Error(path, StrCat("unknown MAT-file version 0x", std::hex, version));
  CheckMat5Elements(f, path, size, big);
  // Then the structure inside every variable, before matio allocates what
  // it claims.
  std::vector<uint8_t> body(static_cast<size_t>(size - 128));
  f.clear();
  f.seekg(128);
  if (!f.read(reinterpret_cast<char*>(body.data()), static_cast<std::streamsize>(body.size()))) {
    throw Error(path, "cannot read (I/O error)");
  }
  VerifyMat5Body(body.data(), body.size(), big, path);
  return MatKind::kMat5;
}

std::string ClassName(const matvar_t* v) {
  switch (v->class_type) {
    case MAT_C_EMPTY:
      return "an empty array";
    case MAT_C_CELL:
      return "a cell array";
    case MAT_C_STRUCT:
      return "a struct";
    case MAT_C_OBJECT:
      return "an object";
    case MAT_C_CHAR:
      return "a char array";
    case MAT_C_SPARSE:
      return "a sparse array";
    case MAT_C_FUNCTION:
      return "a function handle";
    case MAT_C_OPAQUE:
      return "an opaque object";
    default:
      return "a numeric array";
  }
}

std::string DimsText(const matvar_t* v) {
  std::string s;
  for (int i = 0; i < v->rank; ++i) s += StrCat(i ? " x " : "", v->dims[i]);
  return s.empty() ? "0-dimensional" : s;
}

size_t NumElements(const matvar_t* v) {
  size_t n = v->rank > 0 ? 1 : 0;
  for (int i = 0; i < v->rank; ++i) n *= v->dims[i];
  return n;
}

bool IsRealNumeric(const matvar_t* v) {
  return v->class_type >= MAT_C_DOUBLE && v->class_type <= MAT_C_UINT64 && !v->isComplex;
}

// Element i of a numeric variable as double, whatever its stored type.
double ElementAsDouble(const matvar_t* v, size_t i) {
  const auto* p = static_cast<const unsigned char*>(v->data);
  auto get = [&](auto zero) {
    decltype(zero) x;
    std::memcpy(&x, p + i * sizeof(x), sizeof(x));
    return static_cast<double>(x);
  };
  switch (v->data_type) {
    case MAT_T_DOUBLE:
      return get(double{});
    case MAT_T_SINGLE:
      return get(float{});
    case MAT_T_INT8:
      return get(int8_t{});
    case MAT_T_UINT8:
      return get(uint8_t{});
    case MAT_T_INT16:
      return get(int16_t{});
    case MAT_T_UINT16:
      return get(uint16_t{});
    case MAT_T_INT32:
      return get(int32_t{});
    case MAT_T_UINT32:
      return get(uint32_t{});
    case MAT_T_INT64:
      return get(int64_t{});
    case MAT_T_UINT64:
      return get(uint64_t{});
    default:
      return std::numeric_limits<double>::quiet_NaN();
  }
}

size_t ElementSize(enum matio_types t) {
  switch (t) {
    case MAT_T_DOUBLE:
    case MAT_T_INT64:
    case MAT_T_UINT64:
      return 8;
    case MAT_T_SINGLE:
    case MAT_T_INT32:
    case MAT_T_UINT32:
      return 4;
    case MAT_T_INT16:
    case MAT_T_UINT16:
      return 2;
    case MAT_T_INT8:
    case MAT_T_UINT8:
      return 1;
    default:
      return 0;
  }
}

// The numeric data of `v` is present, of a known type, and as long as its dimensions say.
bool HasNumericData(const matvar_t* v) {
  const size_t n = NumElements(v);
  if (n == 0) return true;
  const size_t elem = ElementSize(v->data_type);
  return v->data != nullptr && elem > 0 && v->nbytes >= n * elem;
}

// image_info{1} (or image_info itself when it is a bare struct: harmless).
matvar_t* InfoStruct(matvar_t* info, const std::string& path) {
  if (info->class_type == MAT_C_STRUCT) {
    if (NumElements(info) != 1)
      throw Error(path, StrCat("image_info is a ", DimsText(info), " struct, expected 1 x 1"));
    return info;
  }
  if (info->class_type != MAT_C_CELL) {
    throw Error(path, StrCat("image_info is ", ClassName(info), ", expected a 1 x 1 cell holding a struct"));
  }
  if (NumElements(info) != 1) throw Error(path, StrCat("image_info is a ", DimsText(info), " cell, expected 1 x 1"));
  matvar_t* s = Mat_VarGetCell(info, 0);
  if (s == nullptr) throw Error(path, "image_info{1} is missing (corrupt cell)");
  if (s->class_type != MAT_C_STRUCT) {
    throw Error(path, StrCat("image_info{1} is ", ClassName(s), ", expected a struct with field 'location'"));
  }
  if (NumElements(s) != 1) throw Error(path, StrCat("image_info{1} is a ", DimsText(s), " struct, expected 1 x 1"));
  return s;
}

std::string FieldList(const matvar_t* s) {
  const unsigned n = Mat_VarGetNumberOfFields(const_cast<matvar_t*>(s));
  char* const* names = Mat_VarGetStructFieldnames(s);
  std::string out;
  for (unsigned i = 0; i < n && names != nullptr; ++i) out += StrCat(i ? ", " : "", names[i]);
  return out.empty() ? "none" : out;
}

// An N x 2 real numeric matrix (x column, then y) as points; `what` names it
// in messages. Empty: no points.
std::vector<std::array<double, 2>> PointsOfMatrix(const matvar_t* loc, const std::string& what,
                                                  const std::string& path) {
  if (loc->class_type == MAT_C_EMPTY || (IsRealNumeric(loc) && NumElements(loc) == 0)) return {};
  if (!IsRealNumeric(loc)) {
    throw Error(path, StrCat(what, " is ", ClassName(loc), (loc->isComplex ? " (complex)" : ""),
                             ", expected an N x 2 real numeric array"));
  }
  if (loc->rank != 2 || loc->dims[1] != 2) throw Error(path, StrCat(what, " is ", DimsText(loc), ", expected N x 2"));
  if (!HasNumericData(loc)) throw Error(path, StrCat(what, " data is missing or short (corrupt file)"));
  const size_t n = loc->dims[0];
  std::vector<std::array<double, 2>> points(n);
  for (size_t i = 0; i < n; ++i) {
    points[i] = {ElementAsDouble(loc, i), ElementAsDouble(loc, n + i)};  // column-major: x column, then y
  }
  return points;
}

std::vector<std::array<double, 2>> ReadLocation(matvar_t* s, const std::string& path) {
  matvar_t* loc = Mat_VarGetStructFieldByName(s, "location", 0);
  if (loc == nullptr) throw Error(path, StrCat("image_info has no field 'location' (fields: ", FieldList(s), ")"));
  return PointsOfMatrix(loc, "location", path);
}

int64_t ReadNumber(matvar_t* s, const std::string& path) {
  matvar_t* num = Mat_VarGetStructFieldByName(s, "number", 0);
  if (num == nullptr) return -1;
  if (!IsRealNumeric(num) || NumElements(num) != 1 || !HasNumericData(num)) {
    throw Error(path, StrCat("number is ", ClassName(num), " of size ", DimsText(num), ", expected a numeric scalar"));
  }
  const double v = ElementAsDouble(num, 0);
  if (!std::isfinite(v) || v < 0 || v > 9.0e15 || v != std::floor(v)) {
    throw Error(path, StrCat("number is ", v, ", expected a non-negative whole number"));
  }
  return static_cast<int64_t>(v);
}

std::string VariableList(mat_t* mat) {
  size_t n = 0;
  char** names = Mat_GetDir(mat, &n);
  std::string out;
  for (size_t i = 0; i < n && names != nullptr; ++i) out += StrCat(i ? ", " : "", names[i]);
  return out.empty() ? "none" : out;
}

bool HasVariable(mat_t* mat, const char* name) {
  size_t n = 0;
  char** names = Mat_GetDir(mat, &n);
  for (size_t i = 0; i < n && names != nullptr; ++i) {
    if (names[i] != nullptr && std::strcmp(names[i], name) == 0) return true;
  }
  return false;
}

// matio allocates what a variable's header claims before reading its data:
// a forged 1e9 x 2 location took 16 GB and a minute. Read the headers alone
// first (Mat_VarReadInfo) and refuse an impossible point count.
void CheckClaimedSize(const matvar_t* loc, const std::string& what, const std::string& path) {
  size_t n = 1;
  for (int i = 0; i < loc->rank; ++i) {
    if (loc->dims[i] > static_cast<size_t>(2 * kMaxAnnotationPoints) ||
        (n *= loc->dims[i]) > 2 * kMaxAnnotationPoints) {
      throw Error(path, StrCat(what, " claims ", DimsText(loc), " values, more than the ", kMaxAnnotationPoints,
                               " points supported (corrupt file?)"));
    }
  }
}

void CheckClaimedPoints(mat_t* mat, const std::string& path, const MatioSession& session) {
  MatVarPtr peek(Mat_VarReadInfo(mat, "image_info"));
  if (!peek || session.HasLog()) return;  // the full read below reports it
  matvar_t* s = InfoStruct(peek.get(), path);
  matvar_t* loc = Mat_VarGetStructFieldByName(s, "location", 0);
  if (loc == nullptr) return;
  CheckClaimedSize(loc, "location", path);
}

// ---- MATLAB v7.3 read directly with the HDF5 C API (under h5::Lock) ----
// matio's v7.3 reader only understands attributes exactly as MATLAB writes
// them; h5py (NULLPAD fixed strings) and others lay out the same structure
// slightly differently. MATLAB's layout: image_info is a 1x1 dataset of object
// references (MATLAB_class "cell") to a group (MATLAB_class "struct") whose
// datasets are the fields; an N x 2 MATLAB array is an HDF5 (2, N) dataset,
// and an empty one holds its dimensions with MATLAB_empty = 1.

using h5::Hid;

// The string value of attribute `name` on `obj` ("" when absent): fixed or
// variable length, any padding.
std::string StringAttr(hid_t obj, const char* name) {
  if (H5Aexists(obj, name) <= 0) return "";
  Hid attr(H5Aopen(obj, name, H5P_DEFAULT));
  Hid type(attr.valid() ? H5Aget_type(attr.get()) : -1);
  if (!type.valid() || H5Tget_class(type.get()) != H5T_STRING) return "";
  std::string out;
  if (H5Tis_variable_str(type.get()) > 0) {
    Hid mem(H5Tcopy(H5T_C_S1));
    H5Tset_size(mem.get(), H5T_VARIABLE);
    char* p = nullptr;
    if (H5Aread(attr.get(), mem.get(), &p) >= 0 && p != nullptr) out = p;
    if (p != nullptr) H5free_memory(p);
  } else {
    const size_t n = H5Tget_size(type.get());
    if (n == 0 || n > 4096) return "";
    std::vector<char> buf(n, '\0');
    if (H5Aread(attr.get(), type.get(), buf.data()) >= 0) out.assign(buf.data(), n);
  }
  while (!out.empty() && (out.back() == '\0' || out.back() == ' ')) out.pop_back();
  return out.substr(0, out.find('\0'));
}

bool IsMatlabEmpty(hid_t obj) {
  if (H5Aexists(obj, "MATLAB_empty") <= 0) return false;
  Hid attr(H5Aopen(obj, "MATLAB_empty", H5P_DEFAULT));
  unsigned char v = 0;
  return attr.valid() && H5Aread(attr.get(), H5T_NATIVE_UCHAR, &v) >= 0 && v != 0;
}

// A real numeric dataset as doubles (row-major over its HDF5 dims).
std::vector<double> ReadDoubles73(hid_t ds, const std::string& what, const std::string& path,
                                  std::vector<hsize_t>* dims) {
  Hid type(H5Dget_type(ds));
  const H5T_class_t cls = type.valid() ? H5Tget_class(type.get()) : H5T_NO_CLASS;
  if (cls != H5T_INTEGER && cls != H5T_FLOAT) {
    throw Error(path, StrCat(what, " is not a real numeric array (HDF5 class ", static_cast<int>(cls), ")"));
  }
  Hid space(H5Dget_space(ds));
  const int rank = space.valid() ? H5Sget_simple_extent_ndims(space.get()) : -1;
  if (rank < 0 || rank > 8) throw Error(path, StrCat(what, " has an unreadable shape (corrupt file)"));
  dims->assign(static_cast<size_t>(rank), 0);
  if (rank > 0) H5Sget_simple_extent_dims(space.get(), dims->data(), nullptr);
  const hssize_t n = H5Sget_simple_extent_npoints(space.get());
  // The data must fit the file (a corrupt header can claim any size).
  if (n < 0 || n > 2 * kMaxAnnotationPoints ||
      static_cast<uintmax_t>(n) > fs::file_size(path) / std::max<size_t>(1, H5Tget_size(type.get()))) {
    throw Error(path, StrCat(what, " claims ", n, " elements, more than the file holds (corrupt file)"));
  }
  std::vector<double> v(static_cast<size_t>(n));
  if (n > 0 && H5Dread(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()) < 0) {
    throw Error(path, StrCat("cannot read ", what, " (corrupt or truncated v7.3 MAT-file)"));
  }
  return v;
}

// Opens image_info{1}: through the cell's object reference, or a bare struct group.
hid_t OpenInfoStruct73(hid_t file, const std::string& path) {
  H5O_info_t info;
  if (H5Oget_info_by_name2(file, "image_info", &info, H5O_INFO_BASIC, H5P_DEFAULT) < 0) {
    throw Error(path, "cannot read image_info (corrupt v7.3 MAT-file)");
  }
  if (info.type == H5O_TYPE_GROUP) return H5Gopen2(file, "image_info", H5P_DEFAULT);
  Hid ds(H5Dopen2(file, "image_info", H5P_DEFAULT));
  const std::string cls = ds.valid() ? StringAttr(ds.get(), "MATLAB_class") : "";
  Hid type(ds.valid() ? H5Dget_type(ds.get()) : -1);
  if (cls != "cell" || !type.valid() || H5Tget_class(type.get()) != H5T_REFERENCE) {
    throw Error(path, StrCat("image_info is ", cls.empty() ? std::string("not a cell") : "of class " + cls,
                             ", expected a 1 x 1 cell holding a struct"));
  }
  Hid space(H5Dget_space(ds.get()));
  if (H5Sget_simple_extent_npoints(space.get()) != 1) throw Error(path, "image_info is not a 1 x 1 cell");
  hobj_ref_t ref{};
  if (H5Dread(ds.get(), H5T_STD_REF_OBJ, H5S_ALL, H5S_ALL, H5P_DEFAULT, &ref) < 0) {
    throw Error(path, "cannot read image_info's reference (corrupt v7.3 MAT-file)");
  }
  const hid_t target = H5Rdereference2(ds.get(), H5P_DEFAULT, H5R_OBJECT, &ref);
  if (target < 0) throw Error(path, "image_info{1} is missing (dangling reference)");
  if (H5Iget_type(target) != H5I_GROUP) {
    H5Idec_ref(target);
    throw Error(path, "image_info{1} is not a struct");
  }
  return target;
}

// `name` inside the struct as doubles, or nullopt-like false when absent.
bool ReadField73(hid_t st, const char* name, const std::string& path, std::vector<double>* v,
                 std::vector<hsize_t>* dims) {
  if (H5Lexists(st, name, H5P_DEFAULT) <= 0) return false;
  Hid ds(H5Dopen2(st, name, H5P_DEFAULT));
  if (!ds.valid()) throw Error(path, StrCat("field '", name, "' is not an array (corrupt v7.3 MAT-file)"));
  if (IsMatlabEmpty(ds.get())) {
    v->clear();
    dims->clear();
    return true;
  }
  *v = ReadDoubles73(ds.get(), name, path, dims);
  return true;
}

// An N x 2 MATLAB array as HDF5 stores it, (2, N) row-major: the x row,
// then the y row. Empty: no points.
std::vector<std::array<double, 2>> PointsOf73(const std::vector<double>& v, const std::vector<hsize_t>& dims,
                                              const std::string& what, const std::string& path) {
  if (v.empty()) return {};
  if (dims.size() != 2 || dims[0] != 2) {
    throw Error(path, StrCat(what, " is ", dims.size() == 2 ? dims[1] : 0, " x ", dims.empty() ? 0 : dims[0],
                             ", expected N x 2"));
  }
  const size_t n = dims[1];
  std::vector<std::array<double, 2>> points(n);
  for (size_t i = 0; i < n; ++i) points[i] = {v[i], v[n + i]};  // MATLAB column-major: x column, then y
  return points;
}

std::vector<std::array<double, 2>> ReadPointsVariable73(const std::string& path, const std::string& name) {
  h5::Lock lock;  // before any id: their closers call HDF5
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  Hid file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
  if (!file.valid()) throw Error(path, "corrupt or truncated MATLAB v7.3 (HDF5) MAT-file: HDF5 cannot open it");
  if (H5Lexists(file.get(), name.c_str(), H5P_DEFAULT) <= 0) {
    throw Error(path, StrCat("no variable '", name, "' in this MATLAB v7.3 file"));
  }
  std::vector<double> v;
  std::vector<hsize_t> dims;
  if (!ReadField73(file.get(), name.c_str(), path, &v, &dims)) {
    throw Error(path, StrCat("no variable '", name, "' in this MATLAB v7.3 file"));
  }
  return PointsOf73(v, dims, name, path);
}

Annotation ReadMat73(const std::string& path) {
  h5::Lock lock;  // before any id: their closers call HDF5
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  Hid file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
  if (!file.valid()) throw Error(path, "corrupt or truncated MATLAB v7.3 (HDF5) MAT-file: HDF5 cannot open it");
  if (H5Lexists(file.get(), "image_info", H5P_DEFAULT) <= 0) {
    throw Error(path, "no variable 'image_info' in this MATLAB v7.3 file");
  }
  Hid st(OpenInfoStruct73(file.get(), path));
  if (!st.valid()) throw Error(path, "cannot open image_info{1} (corrupt v7.3 MAT-file)");
  Annotation a;
  std::vector<double> v;
  std::vector<hsize_t> dims;
  if (!ReadField73(st.get(), "location", path, &v, &dims)) throw Error(path, "image_info has no field 'location'");
  a.points = PointsOf73(v, dims, "location", path);
  if (ReadField73(st.get(), "number", path, &v, &dims)) {
    if (v.size() != 1) throw Error(path, StrCat("number has ", v.size(), " elements, expected a numeric scalar"));
    if (!std::isfinite(v[0]) || v[0] < 0 || v[0] > 9.0e15 || v[0] != std::floor(v[0])) {
      throw Error(path, StrCat("number is ", v[0], ", expected a non-negative whole number"));
    }
    a.number = static_cast<int64_t>(v[0]);
  }
  return a;
}

}  // namespace

Annotation ReadAnnotation(const std::string& path) {
  const MatKind kind = ProbeFile(path);
  if (kind == MatKind::kMat73) return ReadMat73(path);
  MatioSession session;
  MatFilePtr mat(Mat_Open(path.c_str(), MAT_ACC_RDONLY));
  if (!mat) {
    if (kind == MatKind::kMat73) throw Error(path, kV73Unreadable);
    throw Error(path, StrCat("not a readable MAT-file", session.HasLog() ? ": " + session.FirstLog() : ""));
  }
  CheckClaimedPoints(mat.get(), path, session);
  MatVarPtr info(Mat_VarRead(mat.get(), "image_info"));
  if (!info || session.HasLog()) {
    const std::string first = session.FirstLog();
    // matio also logs when a v7.3 file lacks the variable: tell that case apart by the file's directory.
    Mat_Rewind(mat.get());
    if (!HasVariable(mat.get(), "image_info")) {
      throw Error(path, StrCat("no variable 'image_info' (variables: ", VariableList(mat.get()), ")"));
    }
    throw Error(path, StrCat("corrupt or truncated MAT-file", first.empty() ? "" : ": " + first));
  }
  matvar_t* s = InfoStruct(info.get(), path);
  Annotation a;
  a.points = ReadLocation(s, path);
  a.number = ReadNumber(s, path);
  return a;
}

std::vector<std::array<double, 2>> ReadPointsVariable(const std::string& path, const std::string& name) {
  const MatKind kind = ProbeFile(path);
  if (kind == MatKind::kMat73) return ReadPointsVariable73(path, name);
  MatioSession session;
  MatFilePtr mat(Mat_Open(path.c_str(), MAT_ACC_RDONLY));
  if (!mat) throw Error(path, StrCat("not a readable MAT-file", session.HasLog() ? ": " + session.FirstLog() : ""));
  {
    MatVarPtr peek(Mat_VarReadInfo(mat.get(), name.c_str()));
    if (peek && !session.HasLog()) CheckClaimedSize(peek.get(), name, path);
  }
  Mat_Rewind(mat.get());
  MatVarPtr var(Mat_VarRead(mat.get(), name.c_str()));
  if (!var || session.HasLog()) {
    const std::string first = session.FirstLog();
    Mat_Rewind(mat.get());
    if (!HasVariable(mat.get(), name.c_str())) {
      throw Error(path, StrCat("no variable '", name, "' (variables: ", VariableList(mat.get()), ")"));
    }
    throw Error(path, StrCat("corrupt or truncated MAT-file", first.empty() ? "" : ": " + first));
  }
  return PointsOfMatrix(var.get(), name, path);
}

namespace {

// An N x 2 MATLAB array's data, column-major: all x, then all y.
std::vector<double> ColumnMajor(const std::vector<std::array<double, 2>>& points) {
  const size_t n = points.size();
  std::vector<double> data(2 * n);
  for (size_t i = 0; i < n; ++i) {
    data[i] = points[i][0];
    data[n + i] = points[i][1];
  }
  return data;
}

// A 1-row N x 2 double variable, or null when matio cannot allocate it.
matvar_t* PointsMatrix(const char* name, std::vector<double>& data) {
  size_t dims[2] = {data.size() / 2, 2};
  return Mat_VarCreate(name, MAT_C_DOUBLE, MAT_T_DOUBLE, 2, dims, data.empty() ? nullptr : data.data(), 0);
}

// Writes one variable, made by `build` (null: out of memory), as a MAT5 file
// (zlib-compressed), atomically.
void WriteMat5(const std::string& path, const std::function<MatVarPtr()>& build) {
  AtomicFile out(path);
  {
    MatioSession session;
    // A fixed header (matio's default has the date) keeps output byte-identical across runs.
    const char* header = "MATLAB 5.0 MAT-file, Platform: GLNXA64, Created by: csrnet-cpp";
    MatFilePtr mat(Mat_CreateVer(out.temp_path().c_str(), header, MAT_FT_MAT5));
    if (!mat) {
      throw Error(path, StrCat("cannot create MAT-file (folder missing or not writable?)",
                               session.HasLog() ? ": " + session.FirstLog() : ""));
    }
    const MatVarPtr var = build();
    if (!var) throw Error(path, "cannot build the MAT variables (out of memory?)");
    if (Mat_VarWrite(mat.get(), var.get(), MAT_COMPRESSION_ZLIB) != 0) {
      throw Error(path,
                  StrCat("cannot write MAT-file (disk full?)", session.HasLog() ? ": " + session.FirstLog() : ""));
    }
    if (Mat_Close(mat.release()) != 0) throw Error(path, "cannot finish writing the MAT-file (disk full?)");
  }
  out.Commit();
}

}  // namespace

void WritePointsVariable(const std::string& path, const std::string& name,
                         const std::vector<std::array<double, 2>>& points) {
  std::vector<double> data = ColumnMajor(points);
  WriteMat5(path, [&] { return MatVarPtr(PointsMatrix(name.c_str(), data)); });
}

void WriteAnnotation(const std::string& path, const std::vector<std::array<double, 2>>& points,
                     const std::string& number_class) {
  const size_t n = points.size();
  if (number_class != "uint8" && number_class != "uint16" && number_class != "double") {
    throw Error(path, StrCat("unsupported class '", number_class, "' for number (expected uint8, uint16 or double)"));
  }
  const size_t max_n = number_class == "uint8" ? 255 : number_class == "uint16" ? 65535 : size_t{1} << 53;
  if (n > max_n) throw Error(path, StrCat(n, " points do not fit in a ", number_class, " number"));
  std::vector<double> location = ColumnMajor(points);
  WriteMat5(path, [&]() -> MatVarPtr {
    size_t one[2] = {1, 1};
    matvar_t* loc = PointsMatrix("location", location);
    const uint8_t n8 = static_cast<uint8_t>(n);
    const uint16_t n16 = static_cast<uint16_t>(n);
    const double nd = static_cast<double>(n);
    matvar_t* num = number_class == "uint8"
                        ? Mat_VarCreate("number", MAT_C_UINT8, MAT_T_UINT8, 2, one, const_cast<uint8_t*>(&n8), 0)
                    : number_class == "uint16"
                        ? Mat_VarCreate("number", MAT_C_UINT16, MAT_T_UINT16, 2, one, const_cast<uint16_t*>(&n16), 0)
                        : Mat_VarCreate("number", MAT_C_DOUBLE, MAT_T_DOUBLE, 2, one, const_cast<double*>(&nd), 0);
    const char* fields[] = {"location", "number", nullptr};
    matvar_t* s = Mat_VarCreateStruct2(nullptr, 2, one, fields);
    if (loc == nullptr || num == nullptr || s == nullptr) {
      Mat_VarFree(loc);
      Mat_VarFree(num);
      Mat_VarFree(s);
      return nullptr;
    }
    Mat_VarSetStructFieldByName(s, "location", 0, loc);  // the struct owns its fields from here
    Mat_VarSetStructFieldByName(s, "number", 0, num);
    matvar_t* cells[1] = {s};
    MatVarPtr info(Mat_VarCreate("image_info", MAT_C_CELL, MAT_T_CELL, 2, one, cells, 0));
    if (!info) Mat_VarFree(s);
    return info;
  });
}

}  // namespace csr
