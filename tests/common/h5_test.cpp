#include "common/io/h5.h"

#include <fcntl.h>
#include <unistd.h>
#include <doctest/doctest.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <csignal>
#include <sys/wait.h>

#include <opencv2/core.hpp>

#include "common/base/error.h"
#include "tests/test_expect.h"
#include "tests/test_skip.h"
#include "tests/test_util.h"

namespace csr {
namespace {

namespace fs = std::filesystem;

using test::ExpectError;

// Everything written to file descriptor 2 (C stdio and HDF5's error stack
// printer alike) while `fn` runs.
template <typename Fn>
std::string CaptureStderr(const fs::path& tmp, Fn&& fn) {
  std::fflush(stderr);
  const int saved = ::dup(STDERR_FILENO);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  REQUIRE(saved >= 0);
  REQUIRE(fd >= 0);
  ::dup2(fd, STDERR_FILENO);
  ::close(fd);
  try {
    fn();
  } catch (...) {
    std::fflush(stderr);
    ::dup2(saved, STDERR_FILENO);
    ::close(saved);
    throw;
  }
  std::fflush(stderr);
  ::dup2(saved, STDERR_FILENO);
  ::close(saved);
  std::ifstream f(tmp);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

// A chunked, deflate-compressed dataset as h5py writes with
// compression="gzip" (the tools write contiguous maps; their readers must
// take these too). The chunk is clamped to the matrix's height.
void WriteChunked(hid_t f, const std::string& name, const cv::Mat& m, int chunk_rows, int deflate) {
  std::vector<hsize_t> dims = {static_cast<hsize_t>(m.rows), static_cast<hsize_t>(m.cols)};
  if (m.channels() > 1) dims.push_back(static_cast<hsize_t>(m.channels()));
  std::vector<hsize_t> chunk = dims;
  chunk[0] = std::min<hsize_t>(dims[0], static_cast<hsize_t>(chunk_rows));
  const h5::Hid props(H5Pcreate(H5P_DATASET_CREATE));
  H5Pset_chunk(props.get(), static_cast<int>(chunk.size()), chunk.data());
  H5Pset_deflate(props.get(), static_cast<unsigned>(deflate));
  const hid_t type = m.depth() == CV_8U ? H5T_STD_U8LE : H5T_IEEE_F32LE;
  const hid_t mem = m.depth() == CV_8U ? H5T_NATIVE_UINT8 : H5T_NATIVE_FLOAT;
  const h5::Hid space = h5::Space(dims);
  const h5::Hid ds(H5Dcreate2(f, name.c_str(), type, space.get(), H5P_DEFAULT, props.get(), H5P_DEFAULT));
  REQUIRE(ds.valid());
  REQUIRE(H5Dwrite(ds.get(), mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, m.data) >= 0);
}

// Dataset `name` of `f`, opened.
h5::Hid OpenDataset(hid_t f, const std::string& name) {
  h5::Hid ds(H5Dopen2(f, name.c_str(), H5P_DEFAULT));
  REQUIRE(ds.valid());
  return ds;
}

cv::Mat RandomMat(int rows, int cols, int type, uint64_t seed) {
  cv::Mat m(rows, cols, type);
  cv::RNG rng(seed);
  if (CV_MAT_DEPTH(type) == CV_8U) {
    rng.fill(m, cv::RNG::UNIFORM, 0, 256);
  } else {
    rng.fill(m, cv::RNG::UNIFORM, -1000.0, 1000.0);
  }
  return m;
}

bool Identical(const cv::Mat& a, const cv::Mat& b) {
  if (a.type() != b.type() || a.size() != b.size()) return false;
  return a.total() == 0 || cv::norm(a, b, cv::NORM_INF) == 0.0;
}

// The dataset's dims as stored in the file.
std::vector<hsize_t> StoredDims(hid_t f, const std::string& name) {
  const h5::Hid space(H5Dget_space(OpenDataset(f, name).get()));
  std::vector<hsize_t> dims(static_cast<size_t>(H5Sget_simple_extent_ndims(space.get())));
  H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  return dims;
}

fs::path WriteSmallFile(const test::TempDir& dir, const std::string& name) {
  const fs::path p = dir / name;
  const h5::Hid f_file = h5::Create(p.string());
  const hid_t f = f_file.get();
  h5::WriteMat(f, "density", RandomMat(64, 48, CV_32F, 1));
  h5::SetAttr(f, "kernel", std::string("adaptive"));
  return p;
}

TEST_CASE("h5: a CV_32F matrix round-trips bit-exactly as a 2-D float32 dataset") {
  h5::Lock lock;  // every h5 helper asserts it is held
  test::TempDir dir;
  const std::string path = (dir / "a.h5").string();
  const cv::Mat m = RandomMat(37, 53, CV_32F, 7);
  {
    const h5::Hid f_file = h5::Create(path);
    const hid_t f = f_file.get();
    h5::WriteMat(f, "density", m);
  }
  const h5::Hid f_file = h5::OpenRead(path);
  const hid_t f = f_file.get();
  CHECK(StoredDims(f, "density") == std::vector<hsize_t>{37, 53});
  CHECK(H5Tget_size(h5::Hid(H5Dget_type(OpenDataset(f, "density").get())).get()) == 4);
  CHECK(Identical(h5::ReadMat(f, "density", path), m));
  CHECK(Identical(h5::ReadMat2f(f, "density", path), m));
}

TEST_CASE("h5: a CV_64F matrix is stored as float64 and ReadMat2f returns it as float32") {
  h5::Lock lock;  // every h5 helper asserts it is held
  test::TempDir dir;
  const std::string path = (dir / "d.h5").string();
  const cv::Mat m = RandomMat(20, 31, CV_64F, 3);
  {
    const h5::Hid f_file = h5::Create(path);
    const hid_t f = f_file.get();
    h5::WriteMat(f, "density", m);
  }
  const h5::Hid f_file = h5::OpenRead(path);
  const hid_t f = f_file.get();
  CHECK(H5Tget_size(h5::Hid(H5Dget_type(OpenDataset(f, "density").get())).get()) == 8);
  CHECK(Identical(h5::ReadMat(f, "density", path), m));
  const cv::Mat as_float = h5::ReadMat2f(f, "density", path);
  REQUIRE(as_float.type() == CV_32F);
  cv::Mat expected;
  m.convertTo(expected, CV_32F);
  CHECK(Identical(as_float, expected));
}

TEST_CASE("h5: a CV_8UC3 image round-trips as an H x W x 3 uint8 dataset") {
  h5::Lock lock;  // every h5 helper asserts it is held
  test::TempDir dir;
  const std::string path = (dir / "img.h5").string();
  const cv::Mat img = RandomMat(15, 22, CV_8UC3, 11);
  {
    const h5::Hid f_file = h5::Create(path);
    const hid_t f = f_file.get();
    h5::WriteMat(f, "image", img);
  }
  const h5::Hid f_file = h5::OpenRead(path);
  const hid_t f = f_file.get();
  CHECK(StoredDims(f, "image") == std::vector<hsize_t>{15, 22, 3});
  CHECK(Identical(h5::ReadMat(f, "image", path), img));
  // A uint8 image is not a float map.
  ExpectError([&] { h5::ReadMat2f(f, "image", path); }, {path, "image"});
}

TEST_CASE("h5: chunked deflate datasets (as h5py writes them) read back unchanged") {
  h5::Lock lock;  // every h5 helper asserts it is held
  test::TempDir dir;
  const std::string path = (dir / "z.h5").string();
  // Smooth data compresses well; random data would not.
  cv::Mat smooth(400, 300, CV_32F, cv::Scalar(0));
  for (int r = 0; r < smooth.rows; ++r) smooth.row(r).setTo(static_cast<float>(r / 40));
  const cv::Mat img = RandomMat(50, 40, CV_8UC3, 5);
  {
    const h5::Hid f_file = h5::Create(path);
    const hid_t f = f_file.get();
    h5::WriteMat(f, "plain", smooth);
    WriteChunked(f, "packed", smooth, 16, 6);
    WriteChunked(f, "image", img, 7, 4);
  }
  const h5::Hid f_file = h5::OpenRead(path);
  const hid_t f = f_file.get();
  for (const char* name : {"packed", "image"}) {
    INFO("dataset " << name);
    const h5::Hid props(H5Dget_create_plist(OpenDataset(f, name).get()));
    CHECK(H5Pget_layout(props.get()) == H5D_CHUNKED);
    CHECK(H5Pget_nfilters(props.get()) == 1);
  }
  const h5::Hid plain = OpenDataset(f, "plain"), packed = OpenDataset(f, "packed");
  CHECK(H5Pget_layout(h5::Hid(H5Dget_create_plist(plain.get())).get()) == H5D_CONTIGUOUS);
  hsize_t chunk[2] = {0, 0};
  H5Pget_chunk(h5::Hid(H5Dget_create_plist(packed.get())).get(), 2, chunk);
  CHECK(chunk[0] == 16);
  CHECK(chunk[1] == 300);
  CHECK(H5Dget_storage_size(packed.get()) * 10 < H5Dget_storage_size(plain.get()));
  CHECK(Identical(h5::ReadMat2f(f, "packed", path), smooth));
  CHECK(Identical(h5::ReadMat(f, "image", path), img));
}

TEST_CASE("h5: a dataset whose chunk spans all its rows reads back") {
  h5::Lock lock;  // every h5 helper asserts it is held
  test::TempDir dir;
  const std::string path = (dir / "c.h5").string();
  const cv::Mat m = RandomMat(5, 9, CV_32F, 2);
  {
    const h5::Hid f_file = h5::Create(path);
    const hid_t f = f_file.get();
    WriteChunked(f, "m", m, 64, 4);
  }
  const h5::Hid f_file = h5::OpenRead(path);
  const hid_t f = f_file.get();
  CHECK(Identical(h5::ReadMat2f(f, "m", path), m));
}

TEST_CASE("h5: WriteFloats and ReadFloats round-trip an N-D array with its shape") {
  h5::Lock lock;  // every h5 helper asserts it is held
  test::TempDir dir;
  const std::string path = (dir / "w.h5").string();
  std::vector<float> data(2 * 3 * 4 * 5);
  for (size_t i = 0; i < data.size(); ++i) data[i] = 0.5f * static_cast<float>(i) - 7.0f;
  {
    const h5::Hid f_file = h5::Create(path);
    const hid_t f = f_file.get();
    h5::WriteFloats(f, "frontend.0.weight", data.data(), {2, 3, 4, 5});
  }
  const h5::Hid f_file = h5::OpenRead(path);
  const hid_t f = f_file.get();
  std::vector<hsize_t> shape;
  CHECK(h5::ReadFloats(f, "frontend.0.weight", path, &shape) == data);
  CHECK(shape == std::vector<hsize_t>{2, 3, 4, 5});
}

TEST_CASE("h5: double, int64, string and int-vector attributes round-trip") {
  h5::Lock lock;  // every h5 helper asserts it is held
  test::TempDir dir;
  const std::string path = (dir / "attrs.h5").string();
  const std::string utf8 = "crop \xC3\xA9t\xC3\xA9 IMG_12.jpg";
  {
    const h5::Hid f_file = h5::Create(path);
    const hid_t f = f_file.get();
    h5::WriteMat(f, "density", RandomMat(4, 4, CV_32F, 1));
    const h5::Hid ds = OpenDataset(f, "density");
    h5::SetAttr(f, "sum", 123.456789012345);
    h5::SetAttr(f, "count", int64_t{-3138});
    h5::SetAttr(f, "big", int64_t{1} << 40);
    h5::SetAttr(f, "kernel", utf8);
    h5::SetAttr(f, "empty", std::string());
    h5::SetAttr(ds.get(), "box", std::vector<int64_t>{10, 20, 224, 224});
  }
  const h5::Hid f_file = h5::OpenRead(path);
  const hid_t f = f_file.get();
  CHECK(h5::HasAttr(f, "sum"));
  CHECK_FALSE(h5::HasAttr(f, "nope"));
  CHECK(h5::GetAttrDouble(f, "sum", path) == 123.456789012345);
  CHECK(h5::GetAttrInt(f, "count", path) == -3138);
  CHECK(h5::GetAttrInt(f, "big", path) == (int64_t{1} << 40));
  CHECK(h5::GetAttrString(f, "kernel", path) == utf8);
  CHECK(h5::GetAttrString(f, "empty", path).empty());
  const h5::Hid ds = OpenDataset(f, "density");
  CHECK(h5::GetAttrInts(ds.get(), "box", path) == std::vector<int64_t>{10, 20, 224, 224});
}

TEST_CASE("h5: a missing or mistyped attribute throws an Error naming the file and attribute") {
  h5::Lock lock;  // every h5 helper asserts it is held
  test::TempDir dir;
  const std::string path = WriteSmallFile(dir, "s.h5").string();
  const h5::Hid f_file = h5::OpenRead(path);
  const hid_t f = f_file.get();
  ExpectError([&] { h5::GetAttrDouble(f, "absent", path); }, {path, "absent"});
  ExpectError([&] { h5::GetAttrInt(f, "absent", path); }, {path, "absent"});
  ExpectError([&] { h5::GetAttrString(f, "absent", path); }, {path, "absent"});
  ExpectError([&] { h5::GetAttrInts(f, "absent", path); }, {path, "absent"});
}

TEST_CASE("h5: files and attributes we write read back in h5py with the same values and types" *
          doctest::test_suite("optional")) {
  h5::Lock lock;  // every h5 helper asserts it is held
  CSR_SKIP_UNLESS(
      fs::exists(test::Python()) && test::Run(test::Python() + " -c 'import h5py, numpy'", "/dev/null") == 0,
      csr::test::kNeedPython, "needs /usr/bin/python3 with h5py");
  test::TempDir dir;
  const std::string path = (dir / "interop.h5").string();
  cv::Mat m(3, 4, CV_32F);
  for (int i = 0; i < 12; ++i) m.at<float>(i / 4, i % 4) = 0.25f * static_cast<float>(i);
  cv::Mat img(2, 3, CV_8UC3);
  for (int i = 0; i < 18; ++i) img.data[i] = static_cast<uint8_t>(10 * i);
  {
    const h5::Hid f_file = h5::Create(path);
    const hid_t f = f_file.get();
    WriteChunked(f, "density", m, 2, 4);
    h5::WriteMat(f, "image", img);
    h5::SetAttr(f, "sum", 2.5);
    h5::SetAttr(f, "count", int64_t{354});
    h5::SetAttr(f, "kernel", std::string("adaptive \xC3\xA9"));
    h5::SetAttr(f, "box", std::vector<int64_t>{1, 2, 3, 4});
  }
  const fs::path script = dir / "check.py";
  {
    std::ofstream py(script);
    py << R"(import sys, h5py, numpy as np
f = h5py.File(sys.argv[1], 'r')
d = f['density']
assert d.dtype == np.float32 and d.shape == (3, 4), (d.dtype, d.shape)
assert np.array_equal(d[()], (0.25 * np.arange(12)).reshape(3, 4).astype(np.float32))
im = f['image']
assert im.dtype == np.uint8 and im.shape == (2, 3, 3), (im.dtype, im.shape)
assert np.array_equal(im[()].ravel(), (10 * np.arange(18)).astype(np.uint8))
a = f.attrs
assert isinstance(a['kernel'], str), type(a['kernel'])
assert a['kernel'] == 'adaptive \u00e9', a['kernel']
assert float(a['sum']) == 2.5 and a['sum'].dtype == np.float64
assert int(a['count']) == 354 and a['count'].dtype == np.int64
assert list(a['box']) == [1, 2, 3, 4] and a['box'].dtype == np.int64
print('ok')
)";
  }
  const fs::path log = dir / "py.log";
  const int rc = test::Run(test::Python() + " " + script.string() + " " + path, log);
  std::ifstream lf(log);
  const std::string out((std::istreambuf_iterator<char>(lf)), std::istreambuf_iterator<char>());
  INFO("python output: " << out);
  CHECK(rc == 0);
  CHECK(out.find("ok") != std::string::npos);
}

TEST_CASE("h5: a file written by h5py (float64 map, int attribute, bytes string) reads back" *
          doctest::test_suite("optional")) {
  h5::Lock lock;  // every h5 helper asserts it is held
  CSR_SKIP_UNLESS(
      fs::exists(test::Python()) && test::Run(test::Python() + " -c 'import h5py, numpy'", "/dev/null") == 0,
      csr::test::kNeedPython, "needs /usr/bin/python3 with h5py");
  test::TempDir dir;
  const std::string path = (dir / "py.h5").string();
  const std::string cmd = test::Python() + " -c \"import h5py, numpy as np; f = h5py.File('" + path +
                          "', 'w'); f['density'] = np.arange(6, dtype=np.float64).reshape(2, 3) / 4; "
                          "f.attrs['annotation_count'] = np.int32(7); f.attrs['kernel'] = np.bytes_(b'fixed'); "
                          "f.attrs['note'] = 'str'\"";
  REQUIRE(test::Run(cmd, dir / "py.log") == 0);
  const h5::Hid f_file = h5::OpenRead(path);
  const hid_t f = f_file.get();
  const cv::Mat m = h5::ReadMat2f(f, "density", path);
  REQUIRE(m.type() == CV_32F);
  CHECK(m.at<float>(1, 2) == 1.25f);
  CHECK(h5::GetAttrInt(f, "annotation_count", path) == 7);
  CHECK(h5::GetAttrString(f, "kernel", path) == "fixed");
  CHECK(h5::GetAttrString(f, "note", path) == "str");
}

TEST_CASE("h5: OpenRead on a truncated HDF5 file throws an Error naming it, without an HDF5 error stack") {
  h5::Lock lock;  // every h5 helper asserts it is held
  test::TempDir dir;
  const fs::path p = WriteSmallFile(dir, "cut.h5");
  fs::resize_file(p, fs::file_size(p) / 2);
  const std::string err =
      CaptureStderr(dir / "stderr.txt", [&] { ExpectError([&] { h5::OpenRead(p.string()); }, {p.string()}); });
  CHECK_MESSAGE(err.empty(), "stderr: " << err);
}

TEST_CASE("h5: OpenRead on a text file or a missing file throws an Error naming it, printing nothing") {
  h5::Lock lock;  // every h5 helper asserts it is held
  test::TempDir dir;
  const fs::path text = dir / "notes.h5";
  std::ofstream(text) << "this is not HDF5\n";
  const fs::path missing = dir / "missing.h5";
  const std::string err = CaptureStderr(dir / "stderr.txt", [&] {
    ExpectError([&] { h5::OpenRead(text.string()); }, {text.string()});
    ExpectError([&] { h5::OpenRead(missing.string()); }, {missing.string()});
  });
  CHECK_MESSAGE(err.empty(), "stderr: " << err);
}

TEST_CASE("h5: errors on a new thread print no HDF5 error stack either") {
  test::TempDir dir;
  const fs::path p = [&] {
    h5::Lock lock;
    return WriteSmallFile(dir, "cut.h5");
  }();
  fs::resize_file(p, fs::file_size(p) / 2);
  const std::string err = CaptureStderr(dir / "stderr.txt", [&] {
    bool threw = false;
    std::thread t([&] {
      try {
        h5::Lock lock;
        h5::OpenRead(p.string());
      } catch (const Error&) {
        threw = true;
      }
    });
    t.join();
    CHECK(threw);
  });
  CHECK_MESSAGE(err.empty(), "stderr: " << err);
}

TEST_CASE("h5: a missing dataset throws an Error naming the file and the dataset") {
  h5::Lock lock;  // every h5 helper asserts it is held
  test::TempDir dir;
  const std::string path = WriteSmallFile(dir, "s.h5").string();
  const h5::Hid f_file = h5::OpenRead(path);
  const hid_t f = f_file.get();
  CHECK(h5::Exists(f, "density"));
  CHECK_FALSE(h5::Exists(f, "target"));
  CHECK_FALSE(h5::Exists(f, "no/such/group"));
  const std::string err = CaptureStderr(dir / "stderr.txt", [&] {
    ExpectError([&] { h5::ReadMat(f, "target", path); }, {path, "target"});
    ExpectError([&] { h5::ReadMat2f(f, "target", path); }, {path, "target"});
    ExpectError([&] { h5::ReadFloats(f, "target", path, nullptr); }, {path, "target"});
  });
  CHECK_MESSAGE(err.empty(), "stderr: " << err);
}

TEST_CASE("h5: a dataset of the wrong rank or type throws an Error naming it") {
  h5::Lock lock;  // every h5 helper asserts it is held
  test::TempDir dir;
  const std::string path = (dir / "r.h5").string();
  {
    const h5::Hid f_file = h5::Create(path);
    const hid_t f = f_file.get();
    std::vector<float> v(24, 1.0f);
    h5::WriteFloats(f, "vector", v.data(), {24});
    h5::WriteFloats(f, "cube", v.data(), {2, 3, 4});
  }
  const h5::Hid f_file = h5::OpenRead(path);
  const hid_t f = f_file.get();
  ExpectError([&] { h5::ReadMat(f, "vector", path); }, {path, "vector"});
  ExpectError([&] { h5::ReadMat2f(f, "cube", path); }, {path, "cube"});
}

TEST_CASE("h5: an empty int-vector attribute round-trips as an empty list") {
  h5::Lock lock;  // every h5 helper asserts it is held
  test::TempDir dir;
  const std::string path = (dir / "e.h5").string();
  {
    const h5::Hid f_file = h5::Create(path);
    const hid_t f = f_file.get();
    h5::SetAttr(f, "boxes", std::vector<int64_t>{});
  }
  const h5::Hid f_file = h5::OpenRead(path);
  const hid_t f = f_file.get();
  CHECK(h5::GetAttrInts(f, "boxes", path).empty());
}

TEST_CASE("h5: writing a dataset whose name is taken throws an Error naming the file and the dataset") {
  h5::Lock lock;  // every h5 helper asserts it is held
  test::TempDir dir;
  const std::string path = (dir / "dup.h5").string();
  const h5::Hid f_file = h5::Create(path);
  const hid_t f = f_file.get();
  h5::WriteMat(f, "density", RandomMat(3, 3, CV_32F, 1));
  const std::vector<float> v(4, 0.0f);
  const std::string err = CaptureStderr(dir / "stderr.txt", [&] {
    ExpectError([&] { h5::WriteMat(f, "density", RandomMat(3, 3, CV_32F, 1)); }, {path, "density"});
    ExpectError([&] { h5::WriteFloats(f, "density", v.data(), {4}); }, {path, "density"});
  });
  CHECK_MESSAGE(err.empty(), "stderr: " << err);
}

TEST_CASE("h5: an attribute that cannot be written throws csr::Error naming the file and the attribute") {
  h5::Lock lock;  // every h5 helper asserts it is held
  // An exception other than csr::Error would not name the file and the attribute.
  test::TempDir dir;
  const std::string path = WriteSmallFile(dir, "ro.h5").string();
  {
    const h5::Hid f_file = h5::Create((dir / "twice.h5").string());
    const hid_t f = f_file.get();
    h5::SetAttr(f, "count", int64_t{1});
    ExpectError([&] { h5::SetAttr(f, "count", int64_t{2}); }, {"twice.h5", "count"});
  }
  const h5::Hid f_file = h5::OpenRead(path);  // read-only
  const hid_t f = f_file.get();
  const std::string err = CaptureStderr(dir / "stderr.txt", [&] {
    ExpectError([&] { h5::SetAttr(f, "sum", 1.0); }, {path, "sum"});
    ExpectError([&] { h5::SetAttr(f, "count", int64_t{3}); }, {path, "count"});
    ExpectError([&] { h5::SetAttr(f, "source", std::string("IMG_1.jpg")); }, {path, "source"});
    ExpectError([&] { h5::SetAttr(f, "box", std::vector<int64_t>{1, 2}); }, {path, "box"});
  });
  CHECK_MESSAGE(err.empty(), "stderr: " << err);
}

TEST_CASE("h5: Create says why it cannot create the file, from errno") {
  h5::Lock lock;
  test::TempDir dir;
  const std::string path = (dir / "missing" / "x.h5").string();
  ExpectError([&] { h5::Create(path); }, {path, "No such file or directory"});
}

TEST_CASE("h5: a dataset whose shape claims more than any image is refused before allocating it") {
  h5::Lock lock;
  test::TempDir dir;
  const std::string path = (dir / "forged.h5").string();
  {
    const h5::Hid f_file = h5::Create(path);
    const hid_t f = f_file.get();
    const hsize_t dims[2] = {200000, 200000}, chunk[2] = {64, 64};  // 160 GB of float32, never written
    const h5::Hid props(H5Pcreate(H5P_DATASET_CREATE));
    H5Pset_chunk(props.get(), 2, chunk);
    const h5::Hid space = h5::Space({dims[0], dims[1]});
    REQUIRE(
        h5::Hid(H5Dcreate2(f, "density", H5T_IEEE_F32LE, space.get(), H5P_DEFAULT, props.get(), H5P_DEFAULT)).valid());
  }
  CHECK(fs::file_size(path) < 100000);
  ExpectError([&] { h5::ReadMat2f(h5::OpenRead(path).get(), "density", path); }, {path, "200000 x 200000"});
}

TEST_CASE("h5: a helper called without h5::Lock aborts with an internal error, in Release too") {
  test::TempDir dir;
  const fs::path p = [&] {
    h5::Lock lock;
    return WriteSmallFile(dir, "ok.h5");
  }();
  std::fflush(nullptr);
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    std::signal(SIGABRT, SIG_DFL);  // doctest's crash handler is not for an expected abort
    const int null = ::open("/dev/null", O_WRONLY);
    dup2(null, 1);
    dup2(null, 2);
    h5::OpenRead(p.string());  // no lock: must abort, never return
    _exit(0);
  }
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  CHECK(WIFSIGNALED(status));
  if (WIFSIGNALED(status)) CHECK(WTERMSIG(status) == SIGABRT);
}

}  // namespace
}  // namespace csr
