#include "common/io/mat_io.h"

#include <hdf5.h>
#include <matio.h>
#include <unistd.h>
#include <doctest/doctest.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <thread>

#include "common/base/error.h"
#include "common/io/image_io.h"
#include "tests/test_expect.h"
#include "tests/test_skip.h"
#include "tests/test_util.h"

namespace csr {
namespace {

namespace fs = std::filesystem;
using Points = std::vector<std::array<double, 2>>;

// Runs `fn`, which must throw csr::Error whose text contains `fragment`.
using test::ExpectError;

// --- Writing malformed files with matio directly (the reader must reject them). ---

matvar_t* Numeric(const char* name, size_t rows, size_t cols, std::vector<double> column_major) {
  size_t dims[2] = {rows, cols};
  return Mat_VarCreate(name, MAT_C_DOUBLE, MAT_T_DOUBLE, 2, dims, column_major.empty() ? nullptr : column_major.data(),
                       0);
}

matvar_t* Struct(std::vector<matvar_t*> fields) {
  std::vector<const char*> names;
  for (matvar_t* f : fields) names.push_back(f->name);
  names.push_back(nullptr);
  size_t one[2] = {1, 1};
  matvar_t* s = Mat_VarCreateStruct2(nullptr, 2, one, names.data());
  for (matvar_t* f : fields) Mat_VarSetStructFieldByName(s, f->name, 0, f);
  return s;
}

matvar_t* Cell(const char* name, std::vector<matvar_t*> cells) {
  size_t dims[2] = {1, cells.size()};
  return Mat_VarCreate(name, MAT_C_CELL, MAT_T_CELL, 2, dims, cells.data(), 0);
}

matvar_t* Renamed(matvar_t* v, const char* name) {
  free(v->name);
  v->name = strdup(name);
  return v;
}

void WriteVars(const fs::path& path, std::vector<matvar_t*> vars, mat_ft version = MAT_FT_MAT5) {
  mat_t* mat = Mat_CreateVer(path.c_str(), nullptr, version);
  REQUIRE(mat != nullptr);
  for (matvar_t* v : vars) {
    REQUIRE(Mat_VarWrite(mat, v, version == MAT_FT_MAT5 ? MAT_COMPRESSION_ZLIB : MAT_COMPRESSION_NONE) == 0);
    Mat_VarFree(v);
  }
  Mat_Close(mat);
}

void WriteInfo(const fs::path& path, std::vector<matvar_t*> fields) {
  WriteVars(path, {Cell("image_info", {Struct(std::move(fields))})});
}

std::string ReadBytes(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

void WriteBytes(const fs::path& p, const std::string& bytes) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f << bytes;
}

Points ManyPoints(int n) {
  Points pts;
  for (int i = 0; i < n; ++i) pts.push_back({0.5 + i * 1.25 + 1.0 / 3.0, 1000.0 - i * 0.75 + 1e-7 * i});
  return pts;
}

}  // namespace

TEST_CASE("real ShanghaiTech annotations: number equals rows, known counts, points inside the image") {
  const fs::path data = test::SharedData();
  if (data.empty()) {
    MESSAGE("shared data absent: skipped");
    return;
  }
  const fs::path root = data / "ShanghaiTech";
  int files = 0;
  for (const char* part : {"part_A_final", "part_B_final"}) {
    for (const char* split : {"train_data", "test_data"}) {
      const fs::path gt_dir = root / part / split / "ground_truth";
      if (!fs::is_directory(gt_dir)) continue;
      for (const auto& e : fs::directory_iterator(gt_dir)) {
        if (e.path().extension() != ".mat") continue;
        INFO(e.path());
        const Annotation a = ReadAnnotation(e.path().string());
        CHECK(a.number == static_cast<int64_t>(a.points.size()));
        const std::string stem = e.path().stem().string().substr(3);  // GT_IMG_1 -> IMG_1
        const ImageSize size = ReadImageSize((root / part / split / "images" / (stem + ".jpg")).string());
        for (const auto& p : a.points) {
          CHECK(p[0] > 0);
          CHECK(p[0] < size.width);
          CHECK(p[1] > 0);
          CHECK(p[1] < size.height);
        }
        ++files;
      }
    }
  }
  CHECK(files >= 12);
  const fs::path a_train = root / "part_A_final/train_data/ground_truth";
  CHECK(ReadAnnotation((a_train / "GT_IMG_268.mat").string()).points.size() == 3138);
  CHECK(ReadAnnotation((a_train / "GT_IMG_157.mat").string()).points.size() == 33);
  CHECK(ReadAnnotation((a_train / "GT_IMG_135.mat").string()).points.size() == 354);
}

TEST_CASE("write then read gives the same points and number, for N = 0, 1, many and each number class") {
  test::TempDir dir;
  for (const std::string cls : {"uint8", "uint16", "double"}) {
    for (int n : {0, 1, 2, 200}) {
      INFO(cls << " n=" << n);
      const Points pts = ManyPoints(n);
      const fs::path p = dir / ("GT_" + cls + std::to_string(n) + ".mat");
      WriteAnnotation(p.string(), pts, cls);
      const Annotation a = ReadAnnotation(p.string());
      CHECK(a.number == n);
      REQUIRE(a.points.size() == pts.size());
      for (size_t i = 0; i < pts.size(); ++i) {
        CHECK(a.points[i][0] == pts[i][0]);  // exact: doubles are stored as doubles
        CHECK(a.points[i][1] == pts[i][1]);
      }
    }
  }
  const Points big = ManyPoints(5000);
  WriteAnnotation((dir / "big.mat").string(), big, "uint16");
  CHECK(ReadAnnotation((dir / "big.mat").string()).points == big);
}

TEST_CASE("writing leaves no temporary file and the output is byte-identical for the same points") {
  test::TempDir dir;
  WriteAnnotation((dir / "a.mat").string(), ManyPoints(50));
  WriteAnnotation((dir / "b.mat").string(), ManyPoints(50));
  CHECK(ReadBytes(dir / "a.mat") == ReadBytes(dir / "b.mat"));
  int entries = 0;
  for (const auto& e : fs::directory_iterator(dir.path())) entries += e.is_regular_file() ? 1 : 0;
  CHECK(entries == 2);
  WriteAnnotation((dir / "a.mat").string(), ManyPoints(3));  // overwrite in place
  CHECK(ReadAnnotation((dir / "a.mat").string()).points.size() == 3);
}

TEST_CASE("writing rejects a number class that cannot hold N or is unknown") {
  test::TempDir dir;
  ExpectError([&] { WriteAnnotation((dir / "x.mat").string(), ManyPoints(256), "uint8"); }, "do not fit");
  ExpectError([&] { WriteAnnotation((dir / "x.mat").string(), ManyPoints(2), "int7"); }, "unsupported class");
  CHECK(!fs::exists(dir / "x.mat"));
  ExpectError([&] { WriteAnnotation((dir / "no/such/folder/x.mat").string(), ManyPoints(2)); },
              "cannot create MAT-file");
}

TEST_CASE("reading tolerates single/integer location, a missing number and a bare struct") {
  test::TempDir dir;
  {
    size_t dims[2] = {2, 2};
    float xy[4] = {1.5f, 2.5f, 3.25f, 4.75f};
    matvar_t* loc = Mat_VarCreate("location", MAT_C_SINGLE, MAT_T_SINGLE, 2, dims, xy, 0);
    WriteInfo(dir / "single.mat", {loc});
    const Annotation a = ReadAnnotation((dir / "single.mat").string());
    CHECK(a.number == -1);
    CHECK(a.points == Points{{1.5, 3.25}, {2.5, 4.75}});
  }
  {
    size_t dims[2] = {1, 2};
    uint16_t xy[2] = {7, 9};
    matvar_t* loc = Mat_VarCreate("location", MAT_C_UINT16, MAT_T_UINT16, 2, dims, xy, 0);
    WriteInfo(dir / "u16.mat", {loc, Numeric("number", 1, 1, {1})});
    const Annotation a = ReadAnnotation((dir / "u16.mat").string());
    CHECK(a.number == 1);
    CHECK(a.points == Points{{7, 9}});
  }
  {
    WriteInfo(dir / "empty00.mat", {Numeric("location", 0, 0, {}), Numeric("number", 1, 1, {0})});
    CHECK(ReadAnnotation((dir / "empty00.mat").string()).points.empty());
  }
  {
    // Documented choice: a struct not wrapped in a cell is accepted (nothing is ambiguous).
    WriteVars(dir / "bare.mat", {Renamed(Struct({Numeric("location", 1, 2, {3, 4})}), "image_info")});
    CHECK(ReadAnnotation((dir / "bare.mat").string()).points == Points{{3, 4}});
  }
}

TEST_CASE("reading rejects malformed annotation structures with a message naming the problem") {
  test::TempDir dir;
  WriteVars(dir / "novar.mat", {Numeric("annotation", 1, 2, {1, 2})});
  ExpectError([&] { ReadAnnotation((dir / "novar.mat").string()); },
              "no variable 'image_info' (variables: annotation)");

  WriteVars(dir / "numeric.mat", {Numeric("image_info", 1, 2, {1, 2})});
  ExpectError([&] { ReadAnnotation((dir / "numeric.mat").string()); }, "image_info is a numeric array");

  WriteVars(dir / "twocells.mat",
            {Cell("image_info", {Struct({Numeric("location", 1, 2, {1, 2})}), Numeric("x", 1, 1, {1})})});
  ExpectError([&] { ReadAnnotation((dir / "twocells.mat").string()); }, "image_info is a 1 x 2 cell");

  WriteVars(dir / "cellnum.mat", {Cell("image_info", {Numeric("x", 1, 2, {1, 2})})});
  ExpectError([&] { ReadAnnotation((dir / "cellnum.mat").string()); }, "image_info{1} is a numeric array");

  WriteInfo(dir / "noloc.mat", {Numeric("number", 1, 1, {3})});
  ExpectError([&] { ReadAnnotation((dir / "noloc.mat").string()); }, "no field 'location' (fields: number)");

  WriteInfo(dir / "3x5.mat", {Numeric("location", 3, 5, std::vector<double>(15, 1.0))});
  ExpectError([&] { ReadAnnotation((dir / "3x5.mat").string()); }, "location is 3 x 5, expected N x 2");

  size_t dims[2] = {1, 4};
  WriteInfo(dir / "char.mat", {Mat_VarCreate("location", MAT_C_CHAR, MAT_T_UINT8, 2, dims, (void*)"abcd", 0)});
  ExpectError([&] { ReadAnnotation((dir / "char.mat").string()); }, "location is a char array");

  double re[2] = {1, 2}, im[2] = {0, 1};
  mat_complex_split_t z = {re, im};
  size_t d12[2] = {1, 2};
  WriteInfo(dir / "complex.mat", {Mat_VarCreate("location", MAT_C_DOUBLE, MAT_T_DOUBLE, 2, d12, &z, MAT_F_COMPLEX)});
  ExpectError([&] { ReadAnnotation((dir / "complex.mat").string()); }, "(complex)");

  WriteInfo(dir / "numchar.mat", {Numeric("location", 1, 2, {1, 2}),
                                  Mat_VarCreate("number", MAT_C_CHAR, MAT_T_UINT8, 2, d12, (void*)"ab", 0)});
  ExpectError([&] { ReadAnnotation((dir / "numchar.mat").string()); }, "number is a char array");
}

TEST_CASE("missing, empty, text, directory and plain HDF5 files give clear errors") {
  test::TempDir dir;
  ExpectError([&] { ReadAnnotation((dir / "nope.mat").string()); }, "file not found");
  ExpectError([&] { ReadAnnotation(dir.path().string()); }, "not a regular file");
  WriteBytes(dir / "empty.mat", "");
  ExpectError([&] { ReadAnnotation((dir / "empty.mat").string()); }, "empty file");
  WriteBytes(dir / "short.mat", "x,y\n1,2\n");
  ExpectError([&] { ReadAnnotation((dir / "short.mat").string()); }, "not a MAT-file");
  WriteBytes(dir / "text.mat", std::string(400, 'a') + "\n");
  ExpectError([&] { ReadAnnotation((dir / "text.mat").string()); }, "not a MAT-file");

  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  const hid_t f = H5Fcreate((dir / "plain.h5").c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  REQUIRE(f >= 0);
  H5Fclose(f);
  ExpectError([&] { ReadAnnotation((dir / "plain.h5").string()); }, "HDF5 file without a MATLAB header");
}

TEST_CASE("every truncation of a valid file gives csr::Error, never garbage or a crash") {
  test::TempDir dir;
  fs::path source = dir / "full.mat";
  const fs::path data = test::SharedData();
  if (!data.empty()) {
    source = data / "ShanghaiTech/part_A_final/train_data/ground_truth/GT_IMG_268.mat";
  } else {
    WriteAnnotation(source.string(), ManyPoints(3000));
  }
  const std::string bytes = ReadBytes(source);
  REQUIRE(bytes.size() > 1000);
  int checked = 0;
  for (size_t len = 1; len < bytes.size(); len += (len < 300 ? 1 : 53)) {
    WriteBytes(dir / "cut.mat", bytes.substr(0, len));
    INFO("length " << len << " of " << bytes.size());
    CHECK_THROWS_AS(ReadAnnotation((dir / "cut.mat").string()), Error);
    ++checked;
  }
  WriteBytes(dir / "cut.mat", bytes.substr(0, bytes.size() - 1));
  ExpectError([&] { ReadAnnotation((dir / "cut.mat").string()); }, "truncated");
  CHECK(checked > 100);
}

TEST_CASE("corrupt compressed data gives csr::Error") {
  test::TempDir dir;
  WriteAnnotation((dir / "ok.mat").string(), ManyPoints(500));
  std::string bytes = ReadBytes(dir / "ok.mat");
  for (size_t i = 200; i < bytes.size() && i < 600; ++i) bytes[i] = static_cast<char>(bytes[i] ^ 0x5a);
  WriteBytes(dir / "bad.mat", bytes);
  CHECK_THROWS_AS(ReadAnnotation((dir / "bad.mat").string()), Error);
}

TEST_CASE("MATLAB v7.3 (HDF5) files: read when well-formed, clear errors otherwise") {
  test::TempDir dir;
  // matio writes v7.3 the way MATLAB does (cell of object references under #refs#).
  WriteVars(
      dir / "v73.mat",
      {Cell("image_info", {Struct({Numeric("location", 2, 2, {1.5, 2.5, 3.5, 4.5}), Numeric("number", 1, 1, {2})})})},
      MAT_FT_MAT73);
  CHECK(ReadBytes(dir / "v73.mat").rfind("MATLAB 7.3 MAT-file", 0) == 0);
  const Annotation a = ReadAnnotation((dir / "v73.mat").string());
  CHECK(a.points == Points{{1.5, 3.5}, {2.5, 4.5}});
  CHECK(a.number == 2);

  // A truncated v7.3 file.
  const std::string bytes = ReadBytes(dir / "v73.mat");
  WriteBytes(dir / "v73cut.mat", bytes.substr(0, bytes.size() / 2));
  ExpectError([&] { ReadAnnotation((dir / "v73cut.mat").string()); }, "v7.3");

  // A fake v7.3 file: an HDF5 file with a 512-byte user block holding the MATLAB header, no image_info.
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  const hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
  H5Pset_userblock(fcpl, 512);
  const hid_t f = H5Fcreate((dir / "fake73.mat").c_str(), H5F_ACC_TRUNC, fcpl, H5P_DEFAULT);
  REQUIRE(f >= 0);
  const hid_t g = H5Gcreate2(f, "something", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  H5Gclose(g);
  H5Fclose(f);
  H5Pclose(fcpl);
  std::string fake = ReadBytes(dir / "fake73.mat");
  std::string header =
      "MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2018 HDF5 schema 1.00 .";
  header.resize(116, ' ');
  header += std::string(8, '\0') + std::string("\x00\x02IM", 4);
  fake.replace(0, header.size(), header);
  WriteBytes(dir / "fake73.mat", fake);
  ExpectError([&] { ReadAnnotation((dir / "fake73.mat").string()); }, "no variable 'image_info'");

  // The header text alone, without an HDF5 body.
  WriteBytes(dir / "text73.mat", header + std::string(600, '\0'));
  ExpectError([&] { ReadAnnotation((dir / "text73.mat").string()); }, "MATLAB v7.3 header but no HDF5 content");
}

// h5py lays a v7.3 file out as MATLAB does (image_info: 1x1 dataset of object
// references to a struct group under #refs#), but writes its MATLAB_class
// attributes as NULLPAD fixed strings, which matio took for "empty".
constexpr const char* kH5pyV73 = R"PY(
import sys, h5py, numpy as np
path, n = sys.argv[1], int(sys.argv[2])
pts = np.array([[10.5 + i, 20.25 + 2 * i] for i in range(n)], dtype=np.float64).reshape(n, 2)
with h5py.File(path, 'w', userblock_size=512) as f:
    s = f.create_group('#refs#').create_group('b')
    s.attrs['MATLAB_class'] = np.bytes_('struct')
    if n:
        loc = s.create_dataset('location', data=pts.T)  # MATLAB N x 2 is HDF5 (2, N)
    else:
        loc = s.create_dataset('location', data=np.array([0, 2], dtype=np.uint64))
        loc.attrs['MATLAB_empty'] = np.uint8(1)
    loc.attrs['MATLAB_class'] = np.bytes_('double')
    num = s.create_dataset('number', data=np.array([[n]], dtype=np.float64))
    num.attrs['MATLAB_class'] = np.bytes_('double')
    ii = f.create_dataset('image_info', shape=(1, 1), dtype=h5py.ref_dtype)
    ii[0, 0] = s.ref
    ii.attrs['MATLAB_class'] = np.bytes_('cell')
hdr = b'MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2018 HDF5 schema 1.00 .'
with open(path, 'r+b') as f:
    f.write((hdr.ljust(116, b' ') + b'\x00' * 8 + b'\x00\x02IM').ljust(512, b'\x00'))
)PY";

TEST_CASE("MATLAB v7.3 files written by h5py in the ShanghaiTech layout are read" * doctest::test_suite("optional")) {
  CSR_SKIP_UNLESS(test::Run(test::Python() + " -c 'import h5py, numpy'") == 0, csr::test::kNeedPython,
                  "needs /usr/bin/python3 with h5py");
  test::TempDir dir;
  { std::ofstream(dir / "mk.py") << kH5pyV73; }
  for (int n : {3, 1, 0}) {
    CAPTURE(n);
    const fs::path mat = dir / StrCat("h5py_", n, ".mat");
    REQUIRE(test::Run(StrCat(test::Python(), " ", (dir / "mk.py").string(), " ", mat.string(), " ", n)) == 0);
    const Annotation a = ReadAnnotation(mat.string());
    REQUIRE(a.points.size() == static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) CHECK(a.points[i] == std::array<double, 2>{10.5 + i, 20.25 + 2 * i});
    CHECK(a.number == n);
  }
}

TEST_CASE("matio's own messages never reach stderr") {
  test::TempDir dir;
  WriteAnnotation((dir / "ok.mat").string(), ManyPoints(2000));
  const std::string bytes = ReadBytes(dir / "ok.mat");
  WriteBytes(dir / "cut.mat", bytes.substr(0, bytes.size() / 2));
  WriteBytes(dir / "bad.mat", bytes.substr(0, 128) + std::string(64, '\x7f'));

  std::fflush(stderr);
  const int saved = dup(2);
  const fs::path log = dir / "stderr.txt";
  FILE* sink = std::fopen(log.c_str(), "w");
  REQUIRE(sink != nullptr);
  dup2(fileno(sink), 2);
  for (const char* name : {"cut.mat", "bad.mat"}) {
    try {
      ReadAnnotation((dir / name).string());
    } catch (const Error&) {
    }
  }
  std::fflush(stderr);
  dup2(saved, 2);
  close(saved);
  std::fclose(sink);
  CHECK(ReadBytes(log).empty());
}

TEST_CASE("concurrent reads from several threads give the right results") {
  test::TempDir dir;
  std::vector<Points> expected;
  for (int i = 0; i < 4; ++i) {
    expected.push_back(ManyPoints(100 + 50 * i));
    WriteAnnotation((dir / ("GT_" + std::to_string(i) + ".mat")).string(), expected.back());
  }
  std::vector<int> failures(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int k = 0; k < 40; ++k) {
        const int i = (t + k) % 4;
        const Annotation a = ReadAnnotation((dir / ("GT_" + std::to_string(i) + ".mat")).string());
        if (a.points != expected[i]) ++failures[t];
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(failures == std::vector<int>(4, 0));
}

TEST_CASE("scipy.io.loadmat reads written files with the same structure as the real ones") {
  if (test::Run(test::Python() + " -c 'import scipy.io' 2>/dev/null") != 0) {
    MESSAGE("/usr/bin/python3 with scipy absent: skipped");
    return;
  }
  test::TempDir dir;
  WriteAnnotation((dir / "u16.mat").string(), {{1.5, 2.25}, {3.0, 4.5}, {5.125, 6.0}}, "uint16");
  WriteAnnotation((dir / "u8.mat").string(), {{7.5, 8.5}}, "uint8");
  WriteAnnotation((dir / "empty.mat").string(), {}, "double");
  const fs::path script = dir / "check.py";
  WriteBytes(script, R"PY(
import sys
import numpy as np
import scipy.io as sio

def info(path):
    m = sio.loadmat(path)
    c = m['image_info']
    assert c.shape == (1, 1) and c.dtype == object, (c.shape, c.dtype)
    s = c[0, 0]
    assert s.shape == (1, 1) and set(s.dtype.names) == {'location', 'number'}, s.dtype
    return s[0, 0]['location'], s[0, 0]['number']

d = sys.argv[1]
loc, num = info(d + '/u16.mat')
assert loc.dtype == np.float64 and loc.shape == (3, 2), (loc.dtype, loc.shape)
assert np.array_equal(loc, [[1.5, 2.25], [3.0, 4.5], [5.125, 6.0]]), loc
assert num.dtype == np.uint16 and num.shape == (1, 1) and num[0, 0] == 3, repr(num)
loc, num = info(d + '/u8.mat')
assert num.dtype == np.uint8 and num[0, 0] == 1 and np.array_equal(loc, [[7.5, 8.5]])
loc, num = info(d + '/empty.mat')
assert loc.shape == (0, 2) and num.dtype == np.float64 and num[0, 0] == 0, (loc.shape, repr(num))
if len(sys.argv) > 2:  # a real file has the same layout
    loc, num = info(sys.argv[2])
    assert loc.dtype == np.float64 and loc.shape[1] == 2 and num[0, 0] == loc.shape[0]
print('ok')
)PY");
  std::string real;
  const fs::path data = test::SharedData();
  if (!data.empty()) real = (data / "ShanghaiTech/part_A_final/train_data/ground_truth/GT_IMG_157.mat").string();
  const fs::path out = dir / "out.txt";
  const int rc = test::Run(test::Python() + " " + script.string() + " " + dir.path().string() + " " + real, out);
  INFO(ReadBytes(out));
  CHECK(rc == 0);
}

// A MAT5 file whose location claims `rows` x 2 points but holds three: the
// dimensions are patched in an uncompressed file (a compressed one is the
// same once inflated).
static void WriteForgedRows(const fs::path& path, int32_t rows) {
  mat_t* mat = Mat_CreateVer(path.c_str(), nullptr, MAT_FT_MAT5);
  REQUIRE(mat != nullptr);
  matvar_t* v =
      Cell("image_info", {Struct({Numeric("location", 3, 2, {1, 2, 3, 4, 5, 6}), Numeric("number", 1, 1, {3})})});
  REQUIRE(Mat_VarWrite(mat, v, MAT_COMPRESSION_NONE) == 0);
  Mat_VarFree(v);
  Mat_Close(mat);
  std::string bytes = ReadBytes(path);
  // The dimensions subelement of location: miINT32 (5), 8 bytes, then 3 and 2.
  const int32_t want[4] = {5, 8, 3, 2};
  const std::string pattern(reinterpret_cast<const char*>(want), sizeof(want));
  const size_t at = bytes.find(pattern);
  REQUIRE(at != std::string::npos);
  std::memcpy(&bytes[at + 8], &rows, 4);
  WriteBytes(path, bytes);
}

TEST_CASE("a .mat claiming billions of points is refused without allocating them") {
  test::TempDir dir;
  WriteForgedRows(dir / "ok.mat", 3);
  CHECK(ReadAnnotation((dir / "ok.mat").string()).points.size() == 3);
  for (int32_t rows : {1000000000, 2147483647, -5}) {
    CAPTURE(rows);
    WriteForgedRows(dir / "big.mat", rows);
    // The structure check (common/mat5_check) sees that the claim exceeds
    // the bytes that follow, before matio allocates anything.
    ExpectError([&] { ReadAnnotation((dir / "big.mat").string()); },
                {(dir / "big.mat").string(), "corrupt MAT-file", rows < 0 ? "negative dimension" : "claims"});
  }
}

}  // namespace csr

namespace csr {
namespace {

TEST_CASE("annPoints (UCF-QNRF, UCF_CC_50, NWPU-Crowd mats): written, read back, MAT5 and v7.3") {
  test::TempDir dir;
  const Points points = {{10.5, 20.25}, {0, 0}, {1999.75, 1023.5}};
  const std::string path = (dir / "img_0001_ann.mat").string();
  WritePointsVariable(path, "annPoints", points);
  CHECK(ReadPointsVariable(path, "annPoints") == points);
  WritePointsVariable(path, "annPoints", {});
  CHECK(ReadPointsVariable(path, "annPoints").empty());

  // As the datasets ship them: written by MATLAB (here matio), also as v7.3 and as single precision.
  WriteVars(dir / "v5.mat", {Numeric("annPoints", 2, 2, {1, 3, 2, 4})});
  CHECK(ReadPointsVariable((dir / "v5.mat").string(), "annPoints") == Points{{1, 2}, {3, 4}});
  WriteVars(dir / "v73.mat", {Numeric("annPoints", 2, 2, {1, 3, 2, 4})}, MAT_FT_MAT73);
  CHECK(ReadPointsVariable((dir / "v73.mat").string(), "annPoints") == Points{{1, 2}, {3, 4}});
  std::vector<float> single = {5, 6, 7, 8};
  size_t dims[2] = {2, 2};
  WriteVars(dir / "single.mat", {Mat_VarCreate("annPoints", MAT_C_SINGLE, MAT_T_SINGLE, 2, dims, single.data(), 0)});
  CHECK(ReadPointsVariable((dir / "single.mat").string(), "annPoints") == Points{{5, 7}, {6, 8}});
}

TEST_CASE("annPoints: a missing variable, a wrong shape or a damaged file is one error naming the file") {
  test::TempDir dir;
  const fs::path other = dir / "other.mat";
  WriteVars(other, {Numeric("points", 1, 2, {1, 2})});
  ExpectError([&] { ReadPointsVariable(other.string(), "annPoints"); },
              {other.string(), "no variable 'annPoints'", "variables: points"});
  const fs::path wide = dir / "wide.mat";
  WriteVars(wide, {Numeric("annPoints", 2, 3, {1, 2, 3, 4, 5, 6})});
  ExpectError([&] { ReadPointsVariable(wide.string(), "annPoints"); }, {wide.string(), "annPoints is 2 x 3"});
  const fs::path wide73 = dir / "wide73.mat";
  WriteVars(wide73, {Numeric("annPoints", 2, 3, {1, 2, 3, 4, 5, 6})}, MAT_FT_MAT73);
  ExpectError([&] { ReadPointsVariable(wide73.string(), "annPoints"); }, {wide73.string(), "expected N x 2"});
  const std::string path = (dir / "cut.mat").string();
  Points many(500);
  for (size_t i = 0; i < many.size(); ++i) many[i] = {i * 1.5, i * 0.5};
  WritePointsVariable(path, "annPoints", many);
  const std::string bytes = ReadBytes(path);
  WriteBytes(path, bytes.substr(0, bytes.size() - 40));
  ExpectError([&] { ReadPointsVariable(path, "annPoints"); }, {path, "truncated"});
  ExpectError([&] { ReadPointsVariable((dir / "absent.mat").string(), "annPoints"); }, {"absent.mat", "not found"});
}

}  // namespace
}  // namespace csr
