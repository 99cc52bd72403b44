// Shard set reader (ShardSet) and writer (ShardWriter, EncodeRecord). The
// format is documented in docs/shard_format.md. Everything HDF5 goes through
// the C API: it lets us write and read pre-compressed chunks directly (so
// deflate and checksums run in the callers' parallel stages, outside the
// project's HDF5 lock) and never prints HDF5 error stacks. Every HDF5 call
// here runs under h5::Lock (see common/io/h5.h), including the closes done by
// destructors.
#include "common/shards/shards.h"

#include <hdf5.h>
#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <utility>

#include "common/base/error.h"
#include "common/base/fs.h"
#include "common/io/h5.h"

namespace csr {
namespace {

// At most this many shard files stay open at once (file descriptors).
constexpr int kMaxOpenShards = 32;
// Largest side of a stored image or target. Over any image the datasets hold
// (NWPU-Crowd's largest are a few thousand pixels a side, and the tools
// rescale to at most 2048 by default), and it bounds what a corrupt index or
// header can make the reader allocate.
constexpr int64_t kMaxRecordSide = 16384;

// ---------------------------------------------------------------- HDF5 basics

using h5::CheckId;
using h5::CheckRc;
using h5::Fail;
using h5::Hid;
using h5::Space;

// Creation property lists without modification times, so that identical
// content gives byte-identical files (threads, reruns).
Hid UntimedPlist(hid_t cls) {
  Hid p(H5Pcreate(cls), H5Pclose);
  H5Pset_obj_track_times(p.get(), 0);
  return p;
}

// Strings are fixed-length (format version 2): a variable-length string
// lives in HDF5's global heap, and libhdf5 1.10 loops forever on some damaged
// heaps (found by the fuzz stage). A fixed-length string sits inside its
// attribute message, which HDF5 bounds-checks.
constexpr size_t kMaxAttrString = 4096;

Hid Utf8StringType(size_t bytes) {
  Hid t(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(t.get(), std::max<size_t>(bytes, 1));
  H5Tset_strpad(t.get(), H5T_STR_NULLPAD);
  H5Tset_cset(t.get(), H5T_CSET_UTF8);
  return t;
}

void WriteAttr(hid_t obj, const char* name, hid_t file_type, hid_t mem_type, const void* value,
               const std::vector<hsize_t>& dims, const fs::path& file) {
  Hid space = dims.empty() ? Hid(H5Screate(H5S_SCALAR), H5Sclose) : Space(dims);
  Hid attr(CheckId(H5Acreate2(obj, name, file_type, space.get(), H5P_DEFAULT, H5P_DEFAULT), file,
                   StrCat("cannot create attribute '", name, "'")),
           H5Aclose);
  CheckRc(H5Awrite(attr.get(), mem_type, value), file, "cannot write attribute (disk full?)");
}

void WriteAttrInt(hid_t obj, const char* name, int64_t v, const fs::path& file) {
  WriteAttr(obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v, {}, file);
}

void WriteAttrString(hid_t obj, const char* name, const std::string& v, const fs::path& file) {
  if (v.size() > kMaxAttrString) Fail(file, StrCat("attribute '", name, "' is longer than ", kMaxAttrString, " bytes"));
  Hid type = Utf8StringType(v.size());
  std::vector<char> buf(std::max<size_t>(v.size(), 1), '\0');
  std::copy(v.begin(), v.end(), buf.begin());
  WriteAttr(obj, name, type.get(), type.get(), buf.data(), {}, file);
}

bool ReadAttrInt(hid_t obj, const char* name, int64_t* v) {
  if (H5Aexists(obj, name) <= 0) return false;
  Hid attr(H5Aopen(obj, name, H5P_DEFAULT), H5Aclose);
  return attr.valid() && H5Aread(attr.get(), H5T_NATIVE_INT64, v) >= 0;
}

// A scalar string attribute as ShardWriter writes it (fixed length, UTF-8).
// Absent: false. Present in any other form (a variable-length string, say,
// whose bytes would come from the global heap): the shard is refused.
bool ReadAttrString(hid_t obj, const char* name, std::string* v, const fs::path& file) {
  if (H5Aexists(obj, name) <= 0) return false;
  Hid attr(H5Aopen(obj, name, H5P_DEFAULT), H5Aclose);
  Hid space(H5Aget_space(attr.get()), H5Sclose);
  Hid type(H5Aget_type(attr.get()), H5Tclose);
  const size_t width = type.valid() ? H5Tget_size(type.get()) : 0;
  if (!attr.valid() || H5Sget_simple_extent_npoints(space.get()) != 1 || H5Tget_class(type.get()) != H5T_STRING ||
      H5Tis_variable_str(type.get()) != 0 || width == 0 || width > kMaxAttrString) {
    throw Error(file.string(),
                StrCat("attribute '", name, "' is not a fixed-length string of at most ", kMaxAttrString,
                       " bytes (corrupt shard, or one written before format version ", kShardFormatVersion, ")"));
  }
  Hid mem(H5Tcopy(type.get()), H5Tclose);  // same width and padding: no conversion
  std::vector<char> buf(width + 1, '\0');
  CheckRc(H5Aread(attr.get(), mem.get(), buf.data()), file, StrCat("cannot read attribute '", name, "'"));
  *v = std::string(buf.data(), strnlen(buf.data(), width));
  return true;
}

// The one naming rule of shard files (IsShardFileName recognises it).
std::string ShardFileName(int64_t index) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "shard-%05lld.h5", static_cast<long long>(index));
  return buf;
}

std::string RecordName(int64_t local) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%06lld", static_cast<long long>(local));
  return buf;
}

// ---------------------------------------------------------------- zlib

std::vector<uint8_t> Deflate(const uint8_t* data, size_t size, int level) {
  uLongf out_size = compressBound(static_cast<uLong>(size));
  std::vector<uint8_t> out(out_size);
  if (compress2(out.data(), &out_size, data, static_cast<uLong>(size), level) != Z_OK) return {};
  out.resize(out_size);
  return out;
}

}  // namespace

uint32_t FileCrc32(const fs::path& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw Error(path.string(), StrCat("cannot open for reading: ", std::strerror(errno)));
  std::vector<uint8_t> buf(4 << 20);
  uint32_t crc = 0;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), f)) > 0) crc = Crc32(buf.data(), n, crc);
  const bool failed = std::ferror(f) != 0;
  std::fclose(f);
  if (failed) throw Error(path.string(), "read error while computing the checksum");
  return crc;
}

namespace {

// The zlib stream of `bytes` when it is smaller than them, else the bytes.
std::vector<uint8_t> MaybeDeflate(const uint8_t* data, size_t size, int level, bool* deflated) {
  std::vector<uint8_t> out;
  if (level > 0) out = Deflate(data, size, level);
  *deflated = !out.empty() && out.size() < size;
  if (!*deflated) out.assign(data, data + size);
  return out;
}

// Where `view` starts inside `image`, both views of one buffer.
std::array<int, 2> OffsetIn(const cv::Mat& view, const cv::Mat& image) {
  CSR_ASSERT(view.datastart == image.datastart, "a record's pixels must be a view into its image");
  cv::Size whole;
  cv::Point v, i;
  view.locateROI(whole, v);
  image.locateROI(whole, i);
  const cv::Rect box(v.x - i.x, v.y - i.y, view.cols, view.rows);
  CSR_ASSERT((box & cv::Rect(0, 0, image.cols, image.rows)) == box, "a record's pixels lie outside its image");
  return {box.x, box.y};
}

}  // namespace

EncodedImage EncodeImage(const cv::Mat& image, const std::vector<ShardRecord>& records, int deflate) {
  CV_Assert(image.type() == CV_8UC3 && !image.empty() && !records.empty());
  EncodedImage e;
  e.source = records.front().source;
  e.rows = image.rows;
  e.cols = image.cols;
  const cv::Mat whole = image.isContinuous() ? image : image.clone();
  e.bytes = MaybeDeflate(whole.data, whole.total() * whole.elemSize(), deflate, &e.deflated);
  for (const ShardRecord& r : records) {
    CV_Assert(r.image.type() == CV_8UC3 && r.target.type() == CV_32FC1 && !r.image.empty() && !r.target.empty());
    CSR_ASSERT(r.source == e.source, "the records of one image share its source name");
    CSR_ASSERT(r.box[2] == r.image.cols && r.box[3] == r.image.rows, "a record's box is the size of its pixels");
    EncodedRecord out;
    out.box = r.box;
    out.count = r.count;
    out.density_sum = r.density_sum;
    out.crop = r.crop;
    out.scale = r.scale;
    out.at = OffsetIn(r.image, image);
    // The checksum of the record's pixels as a reader returns them (C order),
    // row by row from the view: the same value version 2 stored.
    uint32_t crc = 0;
    for (int y = 0; y < r.image.rows; ++y) crc = Crc32(r.image.ptr(y), r.image.cols * r.image.elemSize(), crc);
    const cv::Mat target = r.target.isContinuous() ? r.target : r.target.clone();
    const size_t target_size = target.total() * target.elemSize();
    out.crc32 = Crc32(target.data, target_size, crc);
    out.target_rows = target.rows;
    out.target_cols = target.cols;
    out.target_bytes = MaybeDeflate(target.data, target_size, deflate, &out.target_deflated);
    e.records.push_back(std::move(out));
  }
  return e;
}

EncodedImage EncodeRecord(const ShardRecord& record, int deflate) {
  return EncodeImage(record.image, {record}, deflate);
}

// ================================================================ ShardWriter

struct ShardWriter::Open {
  explicit Open(fs::path final_path) : file(std::move(final_path)) {}
  AtomicFile file;  // declared first: destroyed last, after the HDF5 handles
  Hid fid;
  Hid records;
  Hid images;
  ShardFileInfo info;
  // The index: one entry per record, and the shape of every image.
  std::vector<std::string> sources;
  std::vector<int32_t> boxes;
  std::vector<int64_t> counts;
  std::vector<double> sums;
  std::vector<int32_t> crops;
  std::vector<int32_t> image_of;
  std::vector<int32_t> at;
  std::vector<double> scales;
  std::vector<int32_t> image_shapes;  // rows, cols per image
};

ShardWriter::ShardWriter(fs::path dir, std::string split, int64_t records_per_shard, int deflate)
    : dir_(std::move(dir)), split_(std::move(split)), per_shard_(records_per_shard), deflate_(deflate) {
  CSR_ASSERT(per_shard_ > 0, "records per shard must be at least 1, got ", per_shard_);
  CSR_ASSERT(deflate_ >= 0 && deflate_ <= 9, "zlib level must be 0..9, got ", deflate_);
}

ShardWriter::~ShardWriter() {
  {
    h5::Lock lock;
    open_.reset();  // an unfinished shard's HDF5 ids close here, under the lock
  }
  for (auto& f : pending_) {
    try {
      f.get();
    } catch (...) {  // already failed: nothing more to report from a destructor
    }
  }
}

void ShardWriter::Collect(bool all, size_t keep) {
  while (!pending_.empty()) {
    const bool ready = pending_.front().wait_for(std::chrono::seconds(0)) == std::future_status::ready;
    if (!all && !ready && pending_.size() <= keep) return;
    std::future<ShardFileInfo> f = std::move(pending_.front());
    pending_.pop_front();
    done_.push_back(f.get());
  }
}

void ShardWriter::Abandon() noexcept {
  {
    h5::Lock lock;
    open_.reset();  // closes the HDF5 file; AtomicFile removes the temporary
  }
  while (!pending_.empty()) {
    try {
      done_.push_back(pending_.front().get());
    } catch (...) {
    }
    pending_.pop_front();
  }
  std::error_code ec;
  for (const auto& f : done_) fs::remove(dir_ / f.file, ec);
  done_.clear();
}

namespace {

void WriteChunkedDataset(hid_t group, const char* name, hid_t file_type, const std::vector<hsize_t>& dims,
                         const std::vector<uint8_t>& bytes, bool deflated, int deflate, const fs::path& file) {
  Hid dcpl = UntimedPlist(H5P_DATASET_CREATE);
  // One chunk holds the whole array: a record is always read whole, and a
  // single chunk can be written and read pre-compressed (H5D*_chunk).
  H5Pset_chunk(dcpl.get(), static_cast<int>(dims.size()), dims.data());
  if (deflate > 0) H5Pset_deflate(dcpl.get(), static_cast<unsigned>(deflate));
  H5Pset_fill_time(dcpl.get(), H5D_FILL_TIME_NEVER);
  Hid space = Space(dims);
  Hid ds(CheckId(H5Dcreate2(group, name, file_type, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT), file,
                 StrCat("cannot create dataset '", name, "' (disk full?)")),
         H5Dclose);
  // Filter mask bit 0 set = "the deflate filter was skipped for this chunk".
  const uint32_t mask = (deflate > 0 && !deflated) ? 1u : 0u;
  const std::vector<hsize_t> offset(dims.size(), 0);
  CheckRc(H5Dwrite_chunk(ds.get(), H5P_DEFAULT, mask, offset.data(), bytes.size(), bytes.data()), file,
          "cannot write record data (disk full?)");
}

template <typename T>
void WriteIndexArray(hid_t group, const char* name, hid_t file_type, hid_t mem_type, const std::vector<T>& v,
                     std::vector<hsize_t> dims, const fs::path& file) {
  Hid space = Space(dims);
  Hid dcpl = UntimedPlist(H5P_DATASET_CREATE);
  Hid ds(CheckId(H5Dcreate2(group, name, file_type, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT), file,
                 "cannot create the shard index (disk full?)"),
         H5Dclose);
  CheckRc(H5Dwrite(ds.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()), file,
          "cannot write the shard index (disk full?)");
}

void WriteIndexStrings(hid_t group, const char* name, const std::vector<std::string>& v, const fs::path& file) {
  // Fixed-length strings: simple to read from C and from numpy alike.
  size_t width = 1;
  for (const auto& s : v) width = std::max(width, s.size());
  std::vector<char> buf(v.size() * width, '\0');
  for (size_t i = 0; i < v.size(); ++i) std::memcpy(&buf[i * width], v[i].data(), v[i].size());
  Hid type(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(type.get(), width);
  H5Tset_strpad(type.get(), H5T_STR_NULLPAD);
  H5Tset_cset(type.get(), H5T_CSET_UTF8);
  WriteIndexArray(group, name, type.get(), type.get(), buf, {v.size()}, file);
}

}  // namespace

void ShardWriter::Add(const EncodedImage& image) {
  if (image.records.empty()) return;  // nothing would refer to it
  h5::Lock lock;
  h5::QuietErrors();
  Collect(false, pending_.size());  // surfaces an earlier shard's flush error early
  if (!open_) {
    const std::string name = ShardFileName(shards_++);
    MakeDirs(dir_ / split_);
    open_ = std::make_unique<Open>(dir_ / split_ / name);
    open_->info.file = StrCat(split_, "/", name);
    const fs::path& tmp = open_->file.temp_path();
    Hid fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
    // HDF5 >= 1.10 structures: single-chunk datasets need no B-tree each.
    H5Pset_libver_bounds(fapl.get(), H5F_LIBVER_V110, H5F_LIBVER_V110);
    // Closing fails while an object is still open, instead of silently
    // deferring the close (and the final flush) past the checksum.
    H5Pset_fclose_degree(fapl.get(), H5F_CLOSE_SEMI);
    Hid fcpl = UntimedPlist(H5P_FILE_CREATE);  // the root group's header
    const fs::path& final_path = open_->file.final_path();
    open_->fid = Hid(
        CheckId(H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, fcpl.get(), fapl.get()), final_path, "cannot create shard file"),
        H5Fclose);
    for (auto [group, name] : {std::pair{&open_->images, "images"}, std::pair{&open_->records, "records"}}) {
      *group = Hid(
          CheckId(H5Gcreate2(open_->fid.get(), name, H5P_DEFAULT, UntimedPlist(H5P_GROUP_CREATE).get(), H5P_DEFAULT),
                  final_path, StrCat("cannot create group /", name)),
          H5Gclose);
    }
  }
  WriteImage(image);
  total_ += static_cast<int64_t>(image.records.size());
  if (open_->info.records >= per_shard_) Close();
}

void ShardWriter::WriteImage(const EncodedImage& image) {
  Open& o = *open_;
  const fs::path& file = o.file.final_path();
  const auto number = static_cast<int32_t>(o.image_shapes.size() / 2);
  WriteChunkedDataset(o.images.get(), RecordName(number).c_str(), H5T_STD_U8LE,
                      {hsize_t(image.rows), hsize_t(image.cols), 3}, image.bytes, image.deflated, deflate_, file);
  o.image_shapes.insert(o.image_shapes.end(), {image.rows, image.cols});
  for (const EncodedRecord& r : image.records) {
    const std::string name = RecordName(o.info.records);
    Hid g(CheckId(
              H5Gcreate2(o.records.get(), name.c_str(), H5P_DEFAULT, UntimedPlist(H5P_GROUP_CREATE).get(), H5P_DEFAULT),
              file, "cannot create record group (disk full?)"),
          H5Gclose);
    WriteChunkedDataset(g.get(), "target", H5T_IEEE_F32LE, {hsize_t(r.target_rows), hsize_t(r.target_cols)},
                        r.target_bytes, r.target_deflated, deflate_, file);
    WriteAttrString(g.get(), "source", image.source, file);
    const std::vector<int64_t> box(r.box.begin(), r.box.end());
    WriteAttr(g.get(), "box", H5T_STD_I64LE, H5T_NATIVE_INT64, box.data(), {4}, file);
    WriteAttrInt(g.get(), "count", r.count, file);
    WriteAttr(g.get(), "density_sum", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &r.density_sum, {}, file);
    WriteAttrInt(g.get(), "crop", r.crop, file);
    WriteAttrInt(g.get(), "crc32", r.crc32, file);
    WriteAttrInt(g.get(), "image", number, file);
    const std::vector<int64_t> at(r.at.begin(), r.at.end());
    WriteAttr(g.get(), "at", H5T_STD_I64LE, H5T_NATIVE_INT64, at.data(), {2}, file);
    WriteAttr(g.get(), "scale", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, r.scale.data(), {2}, file);
    o.sources.push_back(image.source);
    o.boxes.insert(o.boxes.end(), r.box.begin(), r.box.end());
    o.counts.push_back(r.count);
    o.sums.push_back(r.density_sum);
    o.crops.push_back(r.crop);
    o.image_of.push_back(number);
    o.at.insert(o.at.end(), r.at.begin(), r.at.end());
    o.scales.insert(o.scales.end(), r.scale.begin(), r.scale.end());
    ++o.info.records;
  }
}

void ShardWriter::Close() {
  h5::Lock lock;
  if (!open_) return;
  Open& o = *open_;
  const fs::path& file = o.file.final_path();
  const hsize_t n = static_cast<hsize_t>(o.info.records);
  {
    Hid index(CheckId(H5Gcreate2(o.fid.get(), "index", H5P_DEFAULT, UntimedPlist(H5P_GROUP_CREATE).get(), H5P_DEFAULT),
                      file, "cannot create group /index (disk full?)"),
              H5Gclose);
    WriteIndexStrings(index.get(), "source", o.sources, file);
    WriteIndexArray(index.get(), "box", H5T_STD_I32LE, H5T_NATIVE_INT32, o.boxes, {n, 4}, file);
    WriteIndexArray(index.get(), "count", H5T_STD_I64LE, H5T_NATIVE_INT64, o.counts, {n}, file);
    WriteIndexArray(index.get(), "density_sum", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, o.sums, {n}, file);
    WriteIndexArray(index.get(), "crop", H5T_STD_I32LE, H5T_NATIVE_INT32, o.crops, {n}, file);
    WriteIndexArray(index.get(), "image", H5T_STD_I32LE, H5T_NATIVE_INT32, o.image_of, {n}, file);
    WriteIndexArray(index.get(), "at", H5T_STD_I32LE, H5T_NATIVE_INT32, o.at, {n, 2}, file);
    WriteIndexArray(index.get(), "scale", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, o.scales, {n, 2}, file);
    const hsize_t images = o.image_shapes.size() / 2;
    WriteIndexArray(index.get(), "image_shape", H5T_STD_I32LE, H5T_NATIVE_INT32, o.image_shapes, {images, 2}, file);
  }
  WriteAttrString(o.fid.get(), "format", kShardSetFormat, file);
  WriteAttrInt(o.fid.get(), "format_version", kShardFormatVersion, file);
  WriteAttrString(o.fid.get(), "split", split_, file);
  WriteAttrInt(o.fid.get(), "shard", shards_ - 1, file);
  WriteAttrInt(o.fid.get(), "records", o.info.records, file);
  WriteAttrInt(o.fid.get(), "images", static_cast<int64_t>(o.image_shapes.size() / 2), file);
  if (!o.records.Close() || !o.images.Close() || !o.fid.Close())
    Fail(file, "cannot finish the shard file (disk full?)");
  // No HDF5 from here on: checksum, fsync and rename run in the background.
  std::shared_ptr<Open> done(std::move(open_));
  pending_.push_back(std::async(std::launch::async, [done] {
    const fs::path& tmp = done->file.temp_path();
    std::error_code ec;
    done->info.bytes = fs::file_size(tmp, ec);
    if (ec) throw Error(done->file.final_path().string(), StrCat("cannot stat the written shard: ", ec.message()));
    done->info.crc32 = FileCrc32(tmp);
    done->file.Commit();
    return done->info;
  }));
  Collect(false, 2);
}

std::vector<ShardFileInfo> ShardWriter::Finish() {
  Close();
  Collect(true);
  return done_;
}

bool IsShardFileName(const std::string& name) {
  // "shard-" + at least five digits + ".h5", as ShardFileName makes them.
  constexpr size_t kPrefix = 6, kSuffix = 3;
  if (name.size() < kPrefix + 5 + kSuffix || name.compare(0, kPrefix, "shard-") != 0 ||
      name.compare(name.size() - kSuffix, kSuffix, ".h5") != 0) {
    return false;
  }
  for (size_t i = kPrefix; i < name.size() - kSuffix; ++i) {
    if (name[i] < '0' || name[i] > '9') return false;
  }
  return true;
}

nlohmann::json SplitManifest(const std::vector<ShardFileInfo>& shards) {
  nlohmann::json list = nlohmann::json::array();
  int64_t records = 0;
  uint64_t bytes = 0;
  for (const auto& s : shards) {
    list.push_back({{"file", s.file}, {"records", s.records}, {"bytes", s.bytes}, {"crc32", s.crc32}});
    records += s.records;
    bytes += s.bytes;
  }
  return {{"records", records}, {"bytes", bytes}, {"shards", list}};
}

// ================================================================ ShardSetWriter

ShardSetWriter::ShardSetWriter(fs::path dir, const std::vector<std::string>& splits, int64_t records_per_shard,
                               int deflate)
    : dir_(std::move(dir)), names_(splits), infos_(splits.size()) {
  for (const auto& name : names_) {
    writers_.push_back(std::make_unique<ShardWriter>(dir_, name, records_per_shard, deflate));
  }
}

ShardSetWriter::~ShardSetWriter() {
  if (!finished_) Abandon();
}

size_t ShardSetWriter::IndexOf(const std::string& name) const {
  const auto it = std::find(names_.begin(), names_.end(), name);
  CSR_ASSERT(it != names_.end(), "no split '", name, "' in this ShardSetWriter");
  return static_cast<size_t>(it - names_.begin());
}

ShardWriter& ShardSetWriter::split(const std::string& name) { return *writers_[IndexOf(name)]; }

const std::vector<ShardFileInfo>& ShardSetWriter::shards(const std::string& name) const {
  return infos_[IndexOf(name)];
}

nlohmann::json ShardSetWriter::Finish(const nlohmann::json& extra, const nlohmann::json& split_extra) {
  CSR_ASSERT(!finished_, "ShardSetWriter::Finish called twice");
  nlohmann::json splits = nlohmann::json::object();
  int64_t records = 0, shards = 0;
  uint64_t bytes = 0;
  for (size_t k = 0; k < names_.size(); ++k) {
    infos_[k] = writers_[k]->Finish();
    nlohmann::json js = SplitManifest(infos_[k]);
    if (split_extra.contains(names_[k])) js.update(split_extra.at(names_[k]), /*merge_objects=*/true);
    records += js["records"].get<int64_t>();
    bytes += js["bytes"].get<uint64_t>();
    shards += static_cast<int64_t>(infos_[k].size());
    splits[names_[k]] = std::move(js);
  }
  nlohmann::json manifest = extra.is_object() ? extra : nlohmann::json::object();
  manifest.update({{"format", kShardSetFormat},
                   {"format_version", kShardFormatVersion},
                   {"splits", splits},
                   {"totals", {{"records", records}, {"shards", shards}, {"bytes", bytes}}}},
                  /*merge_objects=*/true);
  WriteTextFileAtomic(dir_ / kManifestName, manifest.dump(2) + "\n");
  finished_ = true;
  return manifest;
}

void ShardSetWriter::Abandon() noexcept {
  for (auto& w : writers_) w->Abandon();
  std::error_code ec;
  for (auto& list : infos_) {
    for (const auto& f : list) fs::remove(dir_ / f.file, ec);
    list.clear();
  }
}

// ================================================================ ShardSet

namespace {

struct ShardFile {
  fs::path path;
  int64_t records = 0;
  uint64_t bytes = 0;
  uint32_t crc32 = 0;
  // Open-file cache state, changed by const reads under ShardSet::Impl::mu.
  mutable hid_t fid = -1;
  mutable uint64_t last_use = 0;
};

// A listed shard must exist with the size the manifest recorded.
void CheckShardSize(const ShardFile& sh) {
  std::error_code ec;
  const uint64_t size = fs::file_size(sh.path, ec);
  if (ec) throw Error(sh.path.string(), "shard file listed in manifest.json is missing");
  if (size != sh.bytes) {
    throw Error(sh.path.string(), StrCat("shard is ", size, " bytes but manifest.json says ", sh.bytes,
                                         ": truncated or modified; rebuild with crop_shards --overwrite"));
  }
}

struct SplitData {
  std::string name;
  std::vector<ShardFile> shards;
  std::vector<RecordInfo> info;
  std::vector<std::array<int, 4>> boxes;  // x, y, w, h per record
  std::vector<int32_t> shard_of;          // record -> shard
  std::vector<int32_t> local;             // record -> index inside its shard
  // Version 3: the stored image a record is cut from (its number in the
  // shard, its rows and cols) and where the record's pixels start in it.
  std::vector<int32_t> image_of;
  std::vector<std::array<int, 2>> image_dims;
  std::vector<std::array<int, 2>> at;
};

// One dataset's stored bytes, fetched under the lock and decoded outside it.
struct RawArray {
  std::vector<hsize_t> dims;
  std::vector<uint8_t> bytes;
  bool deflated = false;
  cv::Mat decoded;  // filled directly when the fast path does not apply
};

const nlohmann::json& Field(const nlohmann::json& obj, const char* key, const fs::path& manifest,
                            const std::string& where) {
  if (!obj.is_object() || !obj.contains(key)) {
    throw Error(manifest.string(), StrCat("missing '", where.empty() ? "" : where + ".", key, "'"));
  }
  return obj.at(key);
}

template <typename T>
T FieldAs(const nlohmann::json& obj, const char* key, const fs::path& manifest, const std::string& where) {
  const nlohmann::json& v = Field(obj, key, manifest, where);
  try {
    return v.get<T>();
  } catch (const nlohmann::json::exception&) {
    throw Error(manifest.string(), StrCat("'", where.empty() ? "" : where + ".", key, "' has the wrong type"));
  }
}

std::vector<std::string> ReadIndexStrings(hid_t group, const char* name, size_t n, const fs::path& file) {
  Hid ds(CheckId(H5Dopen2(group, name, H5P_DEFAULT), file, StrCat("missing index dataset '", name, "'")), H5Dclose);
  Hid ftype(H5Dget_type(ds.get()), H5Tclose);
  if (H5Tget_class(ftype.get()) != H5T_STRING || H5Tis_variable_str(ftype.get()) > 0) {
    throw Error(file.string(), StrCat("index dataset '", name, "' is not a fixed-length string array"));
  }
  const size_t width = H5Tget_size(ftype.get());
  Hid mtype(H5Tcopy(ftype.get()), H5Tclose);  // same size and character set: no conversion
  std::vector<char> buf(n * width + 1, '\0');
  CheckRc(H5Dread(ds.get(), mtype.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data()), file,
          "cannot read the shard index (corrupt shard?)");
  std::vector<std::string> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = std::string(&buf[i * width], strnlen(&buf[i * width], width));
  return out;
}

template <typename T>
std::vector<T> ReadIndexArray(hid_t group, const char* name, hid_t mem_type, size_t n, const fs::path& file) {
  Hid ds(CheckId(H5Dopen2(group, name, H5P_DEFAULT), file, StrCat("missing index dataset '", name, "'")), H5Dclose);
  Hid space(H5Dget_space(ds.get()), H5Sclose);
  if (H5Sget_simple_extent_npoints(space.get()) != static_cast<hssize_t>(n)) {
    throw Error(file.string(), StrCat("index dataset '", name, "' has the wrong length"));
  }
  std::vector<T> out(n);
  if (n > 0) {
    CheckRc(H5Dread(ds.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()), file,
            "cannot read the shard index (corrupt shard?)");
  }
  return out;
}

// Reads the whole dataset `name` of a record. Fast path: a single-chunk
// dataset stored raw or deflated is fetched as stored bytes (decompressed by
// the caller, outside the lock); anything else goes through H5Dread.
RawArray FetchArray(hid_t group, const char* name, hid_t want_type, int cv_depth, uint64_t max_rows, uint64_t max_cols,
                    const fs::path& file) {
  Hid ds(CheckId(H5Dopen2(group, name, H5P_DEFAULT), file, StrCat("missing dataset '", name, "'")), H5Dclose);
  Hid space(H5Dget_space(ds.get()), H5Sclose);
  const int rank = H5Sget_simple_extent_ndims(space.get());
  const int want_rank = cv_depth == CV_8U ? 3 : 2;
  if (rank != want_rank) throw Error(file.string(), StrCat("dataset '", name, "' has rank ", rank));
  RawArray a;
  a.dims.resize(static_cast<size_t>(rank));
  H5Sget_simple_extent_dims(space.get(), a.dims.data(), nullptr);
  if (cv_depth == CV_8U && a.dims[2] != 3) throw Error(file.string(), "dataset 'image' is not h x w x 3");
  // Bound the shape before anything is allocated from it: a corrupt header
  // must give an error, not a multi-gigabyte allocation or an int overflow.
  if (a.dims[0] > max_rows || a.dims[1] > max_cols) {
    throw Error(file.string(), StrCat("dataset '", name, "' is ", a.dims[0], " x ", a.dims[1], ", larger than its ",
                                      max_rows, " x ", max_cols, " record in the index (corrupt shard?)"));
  }
  const uint64_t raw_bytes = a.dims[0] * a.dims[1] * (cv_depth == CV_8U ? 3 : 4);
  Hid ftype(H5Dget_type(ds.get()), H5Tclose);
  Hid dcpl(H5Dget_create_plist(ds.get()), H5Pclose);
  bool fast = H5Tequal(ftype.get(), want_type) > 0 && H5Pget_layout(dcpl.get()) == H5D_CHUNKED;
  if (fast) {
    std::vector<hsize_t> chunk(static_cast<size_t>(rank));
    H5Pget_chunk(dcpl.get(), rank, chunk.data());
    fast = chunk == a.dims;
    const int nfilters = H5Pget_nfilters(dcpl.get());
    for (int i = 0; i < nfilters && fast; ++i) {
      unsigned flags = 0, cd[8];
      size_t ncd = 8;
      fast = H5Pget_filter2(dcpl.get(), static_cast<unsigned>(i), &flags, &ncd, cd, 0, nullptr, nullptr) ==
                 H5Z_FILTER_DEFLATE &&
             nfilters == 1;
    }
  }
  const std::vector<hsize_t> offset(a.dims.size(), 0);
  hsize_t stored = 0;
  if (fast && H5Dget_chunk_storage_size(ds.get(), offset.data(), &stored) >= 0 && stored > 0) {
    if (stored > raw_bytes + raw_bytes / 8 + 1024) {  // deflate's worst-case growth is far below this
      throw Error(file.string(), StrCat("dataset '", name, "' claims ", stored, " stored bytes for ", raw_bytes,
                                        " bytes of data (corrupt shard?)"));
    }
    a.bytes.resize(stored);
    uint32_t mask = 0;
    CheckRc(H5Dread_chunk(ds.get(), H5P_DEFAULT, offset.data(), &mask, a.bytes.data()), file,
            StrCat("cannot read dataset '", name, "' (corrupt shard?)"));
    a.deflated = H5Pget_nfilters(dcpl.get()) == 1 && (mask & 1u) == 0;
    return a;
  }
  const int sizes[2] = {static_cast<int>(a.dims[0]), static_cast<int>(a.dims[1])};
  a.decoded.create(2, sizes, cv_depth == CV_8U ? CV_8UC3 : CV_32FC1);
  if (a.decoded.total() > 0) {
    CheckRc(H5Dread(ds.get(), cv_depth == CV_8U ? H5T_NATIVE_UINT8 : H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                    a.decoded.data),
            file, StrCat("cannot read dataset '", name, "' (corrupt shard?)"));
  }
  return a;
}

cv::Mat DecodeArray(RawArray& a, int type, const fs::path& file, const std::string& what) {
  if (!a.decoded.empty() || a.dims[0] == 0 || a.dims[1] == 0) return a.decoded;
  cv::Mat m(static_cast<int>(a.dims[0]), static_cast<int>(a.dims[1]), type);
  const size_t want = m.total() * m.elemSize();
  if (a.deflated) {
    uLongf got = static_cast<uLongf>(want);
    if (uncompress(m.data, &got, a.bytes.data(), static_cast<uLong>(a.bytes.size())) != Z_OK || got != want) {
      throw Error(file.string(), StrCat(what, ": compressed data is corrupt"));
    }
  } else {
    if (a.bytes.size() != want) throw Error(file.string(), StrCat(what, ": stored size does not match its shape"));
    std::memcpy(m.data, a.bytes.data(), want);
  }
  return m;
}

}  // namespace

struct ShardSet::Impl {
  fs::path dir;
  nlohmann::json manifest;
  int64_t version = kShardFormatVersion;
  std::vector<SplitData> splits;
  // The open-file cache (fid, last_use, open_files, tick) is guarded by
  // h5::Lock, which every HDF5 call holds anyway.
  mutable int open_files = 0;
  mutable uint64_t tick = 0;

  ~Impl() {
    h5::Lock lock;
    for (auto& s : splits) {
      for (auto& sh : s.shards) {
        if (sh.fid >= 0) H5Fclose(sh.fid);
      }
    }
  }

  const SplitData& Split(const std::string& name) const {
    for (const auto& s : splits) {
      if (s.name == name) return s;
    }
    throw Error(dir.string(), StrCat("the shard set has no split '", name, "'"));
  }

  void CheckIndex(const SplitData& s, int64_t i) const {
    if (i < 0 || i >= static_cast<int64_t>(s.info.size())) {
      throw Error(dir.string(), StrCat("record ", i, " out of range: split '", s.name, "' has ", s.info.size()));
    }
  }

  static hid_t OpenShard(const fs::path& path) {
    h5::QuietErrors();
    Hid fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
    // Small reads; the raw-chunk path bypasses the chunk cache anyway.
    H5Pset_cache(fapl.get(), 0, 0, 0, 0.0);
    const hid_t fid = H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get());
    if (fid < 0) throw Error(path.string(), "cannot open shard: not an HDF5 file (corrupt or truncated?)");
    return fid;
  }

  // Returns the open file of a shard, closing the least recently used one when
  // too many are open. Caller holds h5::Lock.
  hid_t FileFor(const ShardFile& sh) const {
    CSR_ASSERT(h5::LockHeld(), "the shard cache is guarded by the HDF5 lock");
    sh.last_use = ++tick;
    if (sh.fid >= 0) return sh.fid;
    if (open_files >= kMaxOpenShards) {
      const ShardFile* lru = nullptr;
      for (const auto& s : splits) {
        for (const auto& c : s.shards) {
          if (c.fid >= 0 && (!lru || c.last_use < lru->last_use)) lru = &c;
        }
      }
      if (lru) {
        H5Fclose(lru->fid);
        lru->fid = -1;
        --open_files;
      }
    }
    sh.fid = OpenShard(sh.path);
    ++open_files;
    return sh.fid;
  }

  void LoadSplit(const std::string& name, const nlohmann::json& js, const fs::path& mpath);

  // The manifest's optional "totals" agree with its splits.
  void CheckTotals(const fs::path& mpath) const {
    if (!manifest.contains("totals")) return;
    const nlohmann::json& t = manifest.at("totals");
    int64_t records = 0, shards = 0;
    for (const auto& sp : splits) {
      records += static_cast<int64_t>(sp.info.size());
      shards += static_cast<int64_t>(sp.shards.size());
    }
    if (t.contains("records") && FieldAs<int64_t>(t, "records", mpath, "totals") != records) {
      throw Error(mpath.string(), StrCat("'totals.records' says ", t.at("records").dump(), " but the splits hold ",
                                         records, ": the manifest was modified; rebuild with crop_shards --overwrite"));
    }
    if (t.contains("shards") && FieldAs<int64_t>(t, "shards", mpath, "totals") != shards) {
      throw Error(mpath.string(), StrCat("'totals.shards' says ", t.at("shards").dump(), " but the splits list ",
                                         shards, ": the manifest was modified; rebuild with crop_shards --overwrite"));
    }
  }
};

namespace {

// Most records one shard may claim: far above any real set (crop_shards
// writes 256 per shard by default), low enough that a hostile count cannot
// make the reader allocate gigabytes for the index.
constexpr int64_t kMaxShardRecords = int64_t{1} << 24;

// A listed shard must stay inside the set folder: a manifest is data, and a
// path like "../../etc/x" or "/abs" must not make the reader open other files.
fs::path ShardPath(const fs::path& dir, const std::string& file, const fs::path& mpath, const std::string& where) {
  const fs::path rel(file);
  bool escapes = file.empty() || rel.is_absolute() || rel.has_root_name();
  for (const auto& part : rel) escapes = escapes || part == "..";
  if (escapes) throw Error(mpath.string(), StrCat("'", where, ".file' (", file, ") is not a path inside the set"));
  return dir / rel;
}

// The shard's own root attributes must agree with what the manifest says of
// it: a manifest edited by hand (or paired with other shards) is refused.
void CheckShardAttributes(hid_t fid, const ShardFile& sh, const std::string& split) {
  int64_t records = -1;
  if (ReadAttrInt(fid, "records", &records) && records != sh.records) {
    throw Error(sh.path.string(), StrCat("shard holds ", records, " records but manifest.json says ", sh.records,
                                         ": the manifest does not belong to these shards; rebuild with crop_shards "
                                         "--overwrite"));
  }
  std::string stored;
  if (ReadAttrString(fid, "format", &stored, sh.path) && stored != kShardSetFormat) {
    throw Error(sh.path.string(), StrCat("attribute 'format' is \"", stored, "\", not \"", kShardSetFormat,
                                         "\": not a csrnet-cpp shard"));
  }
  if (ReadAttrString(fid, "split", &stored, sh.path) && stored != split) {
    throw Error(sh.path.string(),
                StrCat("shard belongs to split '", stored, "' but manifest.json lists it under '", split, "'"));
  }
}

// Every index entry describes a record that can exist.
void CheckIndexEntry(const int32_t* box, int64_t count, double sum, const fs::path& file, size_t i) {
  if (box[0] < 0 || box[1] < 0 || box[2] <= 0 || box[3] <= 0 || box[2] > kMaxRecordSide || box[3] > kMaxRecordSide ||
      count < 0 || !std::isfinite(sum)) {
    throw Error(file.string(), StrCat("index entry ", i, " is impossible (box ", box[0], ",", box[1], " ", box[2], "x",
                                      box[3], ", count ", count, ", density sum ", sum, "): corrupt shard"));
  }
}

// A version 3 record's pixels lie inside its stored image, which exists, and
// its scale factors are positive.
void CheckImageEntry(const int32_t* box, const int32_t* at, int32_t image, const std::vector<int32_t>& shapes,
                     const double* scale, const fs::path& file, size_t i) {
  const auto images = static_cast<int32_t>(shapes.size() / 2);
  const bool known = image >= 0 && image < images;
  const int64_t rows = known ? shapes[2 * static_cast<size_t>(image)] : 0;
  const int64_t cols = known ? shapes[2 * static_cast<size_t>(image) + 1] : 0;
  if (!known || rows <= 0 || cols <= 0 || rows > kMaxRecordSide || cols > kMaxRecordSide || at[0] < 0 || at[1] < 0 ||
      int64_t{at[0]} + box[2] > cols || int64_t{at[1]} + box[3] > rows || !(scale[0] > 0) || !(scale[1] > 0) ||
      !std::isfinite(scale[0]) || !std::isfinite(scale[1])) {
    throw Error(file.string(),
                StrCat("index entry ", i, " is impossible (image ", image, " of ", images, " at ", at[0], ",", at[1],
                       ", ", box[2], "x", box[3], " px, scale ", scale[0], ",", scale[1], "): corrupt shard"));
  }
}

}  // namespace

void ShardSet::Impl::LoadSplit(const std::string& name, const nlohmann::json& js, const fs::path& mpath) {
  SplitData s;
  s.name = name;
  const std::string where = "splits." + name;
  const nlohmann::json& shards = Field(js, "shards", mpath, where);
  if (!shards.is_array()) throw Error(mpath.string(), StrCat("'", where, ".shards' is not a list"));
  int64_t total_records = 0;
  uint64_t total_bytes = 0;
  for (size_t k = 0; k < shards.size(); ++k) {
    const std::string w = StrCat(where, ".shards[", k, "]");
    ShardFile sh;
    sh.path = ShardPath(dir, FieldAs<std::string>(shards[k], "file", mpath, w), mpath, w);
    sh.records = FieldAs<int64_t>(shards[k], "records", mpath, w);
    sh.bytes = FieldAs<uint64_t>(shards[k], "bytes", mpath, w);
    sh.crc32 = FieldAs<uint32_t>(shards[k], "crc32", mpath, w);
    if (sh.records < 0 || sh.records > kMaxShardRecords) {
      throw Error(mpath.string(), StrCat("'", w, ".records' is ", sh.records, ", outside 0..", kMaxShardRecords));
    }
    total_records += sh.records;
    total_bytes += sh.bytes;
    CheckShardSize(sh);
    h5::Lock lock;
    Hid fid(OpenShard(sh.path), H5Fclose);
    CheckShardAttributes(fid.get(), sh, name);
    Hid index(CheckId(H5Gopen2(fid.get(), "index", H5P_DEFAULT), sh.path, "missing /index (not a crop_shards shard?)"),
              H5Gclose);
    const size_t n = static_cast<size_t>(sh.records);
    const auto sources = ReadIndexStrings(index.get(), "source", n, sh.path);
    const auto boxes = ReadIndexArray<int32_t>(index.get(), "box", H5T_NATIVE_INT32, n * 4, sh.path);
    const auto counts = ReadIndexArray<int64_t>(index.get(), "count", H5T_NATIVE_INT64, n, sh.path);
    const auto sums = ReadIndexArray<double>(index.get(), "density_sum", H5T_NATIVE_DOUBLE, n, sh.path);
    const auto crops = ReadIndexArray<int32_t>(index.get(), "crop", H5T_NATIVE_INT32, n, sh.path);
    std::vector<int32_t> image_of, at, shapes;
    std::vector<double> scales;
    const bool v3 = version >= 3;
    if (v3) {
      int64_t images = -1;
      if (!ReadAttrInt(fid.get(), "images", &images) || images < 0 || images > kMaxShardRecords) {
        throw Error(sh.path.string(), "root attribute 'images' is missing or impossible (corrupt shard?)");
      }
      image_of = ReadIndexArray<int32_t>(index.get(), "image", H5T_NATIVE_INT32, n, sh.path);
      at = ReadIndexArray<int32_t>(index.get(), "at", H5T_NATIVE_INT32, n * 2, sh.path);
      scales = ReadIndexArray<double>(index.get(), "scale", H5T_NATIVE_DOUBLE, n * 2, sh.path);
      shapes = ReadIndexArray<int32_t>(index.get(), "image_shape", H5T_NATIVE_INT32, static_cast<size_t>(images) * 2,
                                       sh.path);
    }
    for (size_t i = 0; i < n; ++i) {
      CheckIndexEntry(&boxes[i * 4], counts[i], sums[i], sh.path, i);
      if (v3) CheckImageEntry(&boxes[i * 4], &at[i * 2], image_of[i], shapes, &scales[i * 2], sh.path, i);
      RecordInfo info;
      info.width = boxes[i * 4 + 2];
      info.height = boxes[i * 4 + 3];
      info.source = sources[i];
      info.count = counts[i];
      info.density_sum = sums[i];
      info.crop = crops[i];
      if (v3) {
        info.scale = {scales[i * 2], scales[i * 2 + 1]};
        const auto k = static_cast<size_t>(image_of[i]);
        s.image_of.push_back(image_of[i]);
        s.image_dims.push_back({shapes[k * 2], shapes[k * 2 + 1]});
        s.at.push_back({at[i * 2], at[i * 2 + 1]});
      }
      s.info.push_back(std::move(info));
      s.boxes.push_back({boxes[i * 4], boxes[i * 4 + 1], boxes[i * 4 + 2], boxes[i * 4 + 3]});
      s.shard_of.push_back(static_cast<int32_t>(s.shards.size()));
      s.local.push_back(static_cast<int32_t>(i));
    }
    s.shards.push_back(std::move(sh));
  }
  // The split's totals are what a user reads first (--inspect): they must be
  // the sums of its shards, not whatever an edit left there.
  if (js.contains("records") && FieldAs<int64_t>(js, "records", mpath, where) != total_records) {
    throw Error(mpath.string(),
                StrCat("'", where, ".records' says ", js.at("records").dump(), " but its shards hold ", total_records,
                       " records: the manifest was modified; rebuild with crop_shards "
                       "--overwrite"));
  }
  if (js.contains("bytes") && FieldAs<uint64_t>(js, "bytes", mpath, where) != total_bytes) {
    throw Error(mpath.string(),
                StrCat("'", where, ".bytes' says ", js.at("bytes").dump(), " but its shards are ", total_bytes,
                       " bytes: the manifest was modified; rebuild with crop_shards "
                       "--overwrite"));
  }
  splits.push_back(std::move(s));
}

ShardSet::ShardSet(const fs::path& dir) : impl_(std::make_unique<Impl>()) {
  impl_->dir = dir;
  const fs::path mpath = dir / kManifestName;
  if (!fs::is_directory(dir)) throw Error(dir.string(), "shard set folder not found");
  if (!fs::exists(mpath)) {
    throw Error(dir.string(), "no manifest.json: incomplete shard set (crop_shards did not finish); rerun crop_shards");
  }
  try {
    impl_->manifest = nlohmann::json::parse(ReadTextFile(mpath));
  } catch (const nlohmann::json::exception& e) {
    throw Error(mpath.string(), StrCat("not valid JSON: ", e.what()));
  }
  if (impl_->manifest.is_object() && impl_->manifest.contains("format") &&
      impl_->manifest.at("format") != nlohmann::json(kShardSetFormat)) {
    throw Error(mpath.string(), StrCat("'format' is ", impl_->manifest.at("format").dump(), ", not \"", kShardSetFormat,
                                       "\": not a csrnet-cpp shard set"));
  }
  const auto version = FieldAs<int64_t>(impl_->manifest, "format_version", mpath, "");
  if (version < kOldestReadableShardFormat || version > kShardFormatVersion) {
    throw Error(mpath.string(), StrCat("shard format version ", version,
                                       " is not supported (this build reads versions ", kOldestReadableShardFormat,
                                       " to ", kShardFormatVersion, "): rebuild the set with crop_shards --overwrite"));
  }
  impl_->version = version;
  const nlohmann::json& splits = Field(impl_->manifest, "splits", mpath, "");
  if (!splits.is_object()) throw Error(mpath.string(), "'splits' is not an object");
  for (const auto& [name, js] : splits.items()) impl_->LoadSplit(name, js, mpath);
  impl_->CheckTotals(mpath);
  // JSON objects are unordered: list train, then test, then any others by name.
  auto rank = [](const std::string& n) { return n == "train" ? 0 : n == "test" ? 1 : 2; };
  std::stable_sort(impl_->splits.begin(), impl_->splits.end(), [&](const SplitData& a, const SplitData& b) {
    return rank(a.name) != rank(b.name) ? rank(a.name) < rank(b.name) : a.name < b.name;
  });
}

ShardSet::~ShardSet() = default;
ShardSet::ShardSet(ShardSet&&) noexcept = default;
ShardSet& ShardSet::operator=(ShardSet&&) noexcept = default;

const fs::path& ShardSet::dir() const { return impl_->dir; }
const nlohmann::json& ShardSet::manifest() const { return impl_->manifest; }

std::vector<std::string> ShardSet::splits() const {
  std::vector<std::string> out;
  for (const auto& s : impl_->splits) out.push_back(s.name);
  return out;
}

int64_t ShardSet::size(const std::string& split) const { return static_cast<int64_t>(impl_->Split(split).info.size()); }

RecordInfo ShardSet::Info(const std::string& split, int64_t index) const {
  const SplitData& s = impl_->Split(split);
  impl_->CheckIndex(s, index);
  return s.info[static_cast<size_t>(index)];
}

ShardRecord ShardSet::Read(const std::string& split, int64_t index) const {
  const SplitData& s = impl_->Split(split);
  impl_->CheckIndex(s, index);
  const size_t i = static_cast<size_t>(index);
  const ShardFile& sh = s.shards[static_cast<size_t>(s.shard_of[i])];
  const std::string group = "records/" + RecordName(s.local[i]);
  const std::string what = StrCat(s.name, " record ", index, " (/", group, ")");
  RawArray image, target;
  int64_t crc = -1;
  {
    h5::Lock lock;
    h5::QuietErrors();
    const hid_t fid = impl_->FileFor(sh);
    Hid g(
        CheckId(H5Gopen2(fid, group.c_str(), H5P_DEFAULT), sh.path, StrCat("cannot open ", what, " (corrupt shard?)")),
        H5Gclose);
    const RecordInfo& in = s.info[i];
    const auto rows = static_cast<uint64_t>(in.height), cols = static_cast<uint64_t>(in.width);
    if (impl_->version >= 3) {
      // The whole stored image (one chunk), cut to the record's box below.
      const std::array<int, 2>& dims = s.image_dims[i];
      image = FetchArray(fid, ("images/" + RecordName(s.image_of[i])).c_str(), H5T_STD_U8LE, CV_8U,
                         static_cast<uint64_t>(dims[0]), static_cast<uint64_t>(dims[1]), sh.path);
      if (image.dims[0] != static_cast<hsize_t>(dims[0]) || image.dims[1] != static_cast<hsize_t>(dims[1])) {
        throw Error(sh.path.string(), StrCat(what, ": its image is ", image.dims[1], "x", image.dims[0],
                                             " but the index says ", dims[1], "x", dims[0], " (corrupt shard?)"));
      }
    } else {
      image = FetchArray(g.get(), "image", H5T_STD_U8LE, CV_8U, rows, cols, sh.path);
    }
    target = FetchArray(g.get(), "target", H5T_IEEE_F32LE, CV_32F, rows, cols, sh.path);
    if (!ReadAttrInt(g.get(), "crc32", &crc)) crc = -1;
  }
  ShardRecord r;
  r.image = DecodeArray(image, CV_8UC3, sh.path, what);
  if (impl_->version >= 3) {
    const cv::Rect box(s.at[i][0], s.at[i][1], s.info[i].width, s.info[i].height);  // inside: checked at open
    if (box.size() != r.image.size()) r.image = r.image(box).clone();
  }
  r.target = DecodeArray(target, CV_32FC1, sh.path, what);
  if (crc >= 0) {
    const uint32_t got = Crc32(r.target.data, r.target.total() * r.target.elemSize(),
                               Crc32(r.image.data, r.image.total() * r.image.elemSize()));
    if (got != static_cast<uint32_t>(crc)) {
      throw Error(sh.path.string(), StrCat(what, ": checksum mismatch, the shard is corrupt; rebuild it"));
    }
  }
  const RecordInfo& info = s.info[i];
  r.source = info.source;
  r.count = info.count;
  r.density_sum = info.density_sum;
  r.crop = info.crop;
  r.scale = info.scale;
  r.box = s.boxes[i];
  if (r.image.cols != info.width || r.image.rows != info.height) {
    throw Error(sh.path.string(), StrCat(what, ": image is ", r.image.cols, "x", r.image.rows, " but the index says ",
                                         info.width, "x", info.height, " (corrupt shard?)"));
  }
  return r;
}

void ShardSet::Verify() const {
  for (const auto& s : impl_->splits) {
    for (const auto& sh : s.shards) {
      CheckShardSize(sh);
      const uint32_t crc = FileCrc32(sh.path);
      if (crc != sh.crc32) {
        throw Error(sh.path.string(), StrCat("checksum mismatch (crc32 ", crc, ", manifest.json says ", sh.crc32,
                                             "): the shard is corrupt; rebuild with crop_shards --overwrite"));
      }
    }
  }
}

}  // namespace csr
