#include "common/io/mat5_check.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include <zlib.h>

#include "common/base/error.h"

namespace csr {
namespace {

// MAT5 data types and array classes (MATLAB's "MAT-File Format", tables 1-2
// and 1-3).
enum : uint32_t {
  miINT8 = 1,
  miUINT8 = 2,
  miINT16 = 3,
  miUINT16 = 4,
  miINT32 = 5,
  miUINT32 = 6,
  miSINGLE = 7,
  miDOUBLE = 9,
  miINT64 = 12,
  miUINT64 = 13,
  miMATRIX = 14,
  miCOMPRESSED = 15,
  miUTF8 = 16,
  miUTF16 = 17,
  miUTF32 = 18,
};
enum : uint32_t { mxCELL = 1, mxSTRUCT = 2, mxOBJECT = 3, mxCHAR = 4, mxSPARSE = 5, mxDOUBLE = 6, mxUINT64 = 15 };
constexpr uint32_t kComplexFlag = 0x0800;  // in the array flags word, above the class byte
constexpr int kMaxDepth = 32;              // cells of structs of cells ...: far past any annotation

// Bytes per value of a data type; 0 for types that hold no plain values.
size_t TypeSize(uint32_t type) {
  switch (type) {
    case miINT8:
    case miUINT8:
    case miUTF8:
      return 1;
    case miINT16:
    case miUINT16:
    case miUTF16:
      return 2;
    case miINT32:
    case miUINT32:
    case miSINGLE:
    case miUTF32:
      return 4;
    case miDOUBLE:
    case miINT64:
    case miUINT64:
      return 8;
    default:
      return 0;
  }
}

struct Element {
  uint32_t type = 0;
  const uint8_t* data = nullptr;
  size_t nbytes = 0;
  size_t next = 0;  // offset of the following element in the enclosing range
};

class Walker {
 public:
  Walker(bool swap, const std::string& where) : swap_(swap), where_(where) {}

  // The elements of one top-level range (the file body, or an inflated
  // variable): each must be a matrix or a compressed matrix.
  void TopLevel(const uint8_t* p, size_t size, bool inflated) {
    size_t at = 0;
    while (at < size) {
      const Element e = Next(p, size, at, "variable");
      if (e.type == miCOMPRESSED && !inflated) {
        const std::vector<uint8_t> body = Inflate(e.data, e.nbytes);
        TopLevel(body.data(), body.size(), true);
        at += 8 + e.nbytes;  // compressed variables are not padded
        continue;
      } else if (e.type == miMATRIX) {
        Matrix(e, 0);
      } else {
        Fail(StrCat("unexpected element type ", e.type, " where a variable belongs"));
      }
      at = e.next;
    }
  }

 private:
  [[noreturn]] void Fail(const std::string& why) const { throw Error(where_, StrCat("corrupt MAT-file: ", why)); }

  uint32_t U32(const uint8_t* p) const {
    uint32_t v = 0;
    std::memcpy(&v, p, 4);
    if (swap_) v = (v >> 24) | ((v >> 8) & 0xff00u) | ((v << 8) & 0xff0000u) | (v << 24);
    return v;
  }

  // The element starting at `at` in [p, p + size): a normal 8-byte tag, or
  // the packed "small data element" (bytes and type in one word, at most 4
  // bytes of data in the next word).
  Element Next(const uint8_t* p, size_t size, size_t at, const char* what) const {
    if (size - at < 8) Fail(StrCat("truncated ", what, " (", size - at, " bytes left, a tag needs 8)"));
    Element e;
    const uint32_t word = U32(p + at);
    if ((word >> 16) != 0) {
      e.type = word & 0xffffu;
      e.nbytes = word >> 16;
      if (e.nbytes > 4) Fail(StrCat("small data element of ", e.nbytes, " bytes (at most 4)"));
      e.data = p + at + 4;
      e.next = at + 8;
      return e;
    }
    e.type = word;
    e.nbytes = U32(p + at + 4);
    if (e.nbytes > size - at - 8) {
      Fail(StrCat(what, " claims ", e.nbytes, " bytes, only ", size - at - 8, " remain"));
    }
    e.data = p + at + 8;
    const size_t end = at + 8 + e.nbytes;
    e.next = std::min(size, (end + 7) / 8 * 8);  // elements are 8-byte aligned; the last may omit its padding
    return e;
  }

  std::vector<uint8_t> Inflate(const uint8_t* data, size_t n) const {
    z_stream z{};
    if (inflateInit(&z) != Z_OK) Fail("cannot initialise zlib");
    struct End {
      z_stream* z;
      ~End() { inflateEnd(z); }
    } end{&z};
    std::vector<uint8_t> out;
    const size_t step = 1 << 16;
    z.next_in = const_cast<Bytef*>(data);
    z.avail_in = static_cast<uInt>(std::min<size_t>(n, UINT32_MAX));
    size_t fed = z.avail_in;
    int rc = Z_OK;
    while (rc != Z_STREAM_END) {
      if (out.size() >= kMaxMatVariableBytes) {
        Fail(StrCat("a compressed variable inflates past ", kMaxMatVariableBytes >> 20, " MiB"));
      }
      const size_t have = out.size();
      out.resize(have + step);
      z.next_out = out.data() + have;
      z.avail_out = step;
      if (z.avail_in == 0 && fed < n) {
        z.next_in = const_cast<Bytef*>(data + fed);
        z.avail_in = static_cast<uInt>(std::min<size_t>(n - fed, UINT32_MAX));
        fed += z.avail_in;
      }
      rc = inflate(&z, Z_NO_FLUSH);
      out.resize(have + (step - z.avail_out));
      if (rc == Z_STREAM_END) break;
      if (rc != Z_OK || (z.avail_in == 0 && fed == n && z.avail_out != 0)) {
        Fail("a compressed variable is truncated or its zlib data is damaged");
      }
    }
    return out;
  }

  // One miMATRIX element: flags, dimensions, name, then what its class holds.
  void Matrix(const Element& m, int depth) {
    if (depth > kMaxDepth) Fail(StrCat("arrays nested more than ", kMaxDepth, " deep"));
    if (m.nbytes == 0) return;  // an empty array
    const uint8_t* p = m.data;
    const size_t size = m.nbytes;
    const Element flags = Next(p, size, 0, "array flags");
    if (flags.type != miUINT32 || flags.nbytes != 8) Fail("array flags are not two uint32 values");
    const uint32_t cls = U32(flags.data) & 0xffu;
    const bool complex = (U32(flags.data) & kComplexFlag) != 0;
    const Element dims = Next(p, size, flags.next, "dimensions");
    if (dims.type != miINT32 || dims.nbytes < 8 || dims.nbytes % 4 != 0) Fail("dimensions are not int32 values");
    // The number of elements the array claims, saturated: what matters is
    // whether it exceeds the bytes that follow.
    uint64_t count = 1;
    for (size_t i = 0; i < dims.nbytes / 4; ++i) {
      const auto d = static_cast<int32_t>(U32(dims.data + 4 * i));
      if (d < 0) Fail(StrCat("negative dimension ", d));
      count = d == 0 ? 0 : (count > UINT64_MAX / static_cast<uint64_t>(d) ? UINT64_MAX : count * d);
    }
    const Element name = Next(p, size, dims.next, "array name");
    if (name.type != miINT8) Fail("array name is not an int8 element");
    size_t at = name.next;
    const size_t left = size - std::min(size, at);
    switch (cls) {
      case mxCELL:
        Children(p, size, at, count, "cell array", depth);
        break;
      case mxOBJECT:
      case mxSTRUCT: {
        if (cls == mxOBJECT) at = Next(p, size, at, "class name").next;
        const Element len = Next(p, size, at, "field name length");
        if (len.type != miINT32 || len.nbytes != 4) Fail("field name length is not one int32");
        const uint32_t width = U32(len.data);
        const Element names = Next(p, size, len.next, "field names");
        if (names.type != miINT8) Fail("field names are not an int8 element");
        if (width == 0 ? names.nbytes != 0 : names.nbytes % width != 0) {
          Fail(StrCat("field names of ", names.nbytes, " bytes do not split into names of ", width));
        }
        const uint64_t fields = width == 0 ? 0 : names.nbytes / width;
        const uint64_t total = fields == 0 || count <= UINT64_MAX / fields ? count * fields : UINT64_MAX;
        Children(p, size, names.next, total, "struct", depth);
        break;
      }
      case mxSPARSE: {
        const uint32_t nzmax = U32(flags.data + 4);
        if (static_cast<uint64_t>(nzmax) * 4 > left) {
          Fail(StrCat("sparse array claims ", nzmax, " nonzeros in ", left, " bytes"));
        }
        break;
      }
      case mxCHAR:
        if (count > left) Fail(StrCat("char array claims ", count, " characters in ", left, " bytes"));
        break;
      default:
        if (cls >= mxDOUBLE && cls <= mxUINT64) Numeric(p, size, at, count, complex);
        break;  // function handles and opaque objects: matio refuses them itself
    }
  }

  // `count` sub-matrices follow at `at`; each needs at least its 8-byte tag.
  void Children(const uint8_t* p, size_t size, size_t at, uint64_t count, const char* what, int depth) {
    const size_t left = size - std::min(size, at);
    if (count > left / 8) Fail(StrCat(what, " claims ", count, " elements but only ", left, " bytes follow"));
    for (uint64_t i = 0; i < count; ++i) {
      const Element e = Next(p, size, at, "array element");
      if (e.type != miMATRIX) Fail(StrCat(what, " element of type ", e.type, " (expected a matrix)"));
      Matrix(e, depth + 1);
      at = e.next;
    }
  }

  // Real part, then the imaginary part for complex arrays: each holds
  // exactly `count` values of its stored type.
  void Numeric(const uint8_t* p, size_t size, size_t at, uint64_t count, bool complex) {
    for (int part = 0; part < (complex ? 2 : 1); ++part) {
      if (count == 0 && at >= size) return;  // an empty array may omit its data element
      const Element d = Next(p, size, at, "numeric data");
      const size_t width = TypeSize(d.type);
      if (width == 0) Fail(StrCat("numeric data of element type ", d.type));
      if (count > d.nbytes / width || count * width != d.nbytes) {
        Fail(StrCat("numeric array claims ", count, " values but holds ", d.nbytes, " bytes of ", width));
      }
      at = d.next;
    }
  }

  bool swap_;
  const std::string& where_;
};

}  // namespace

void VerifyMat5Body(const uint8_t* body, size_t size, bool swap, const std::string& where) {
  Walker(swap, where).TopLevel(body, size, false);
}

}  // namespace csr
