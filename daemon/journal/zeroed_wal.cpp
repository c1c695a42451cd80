#include "journal/zeroed_wal.hpp"

#include <fcntl.h>
#include <rocksdb/file_system.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <string>
#include <string_view>
#include <utility>

namespace saga {
namespace {

// RocksDB names its write-ahead logs "<number>.log"; its info log is "LOG" and SST files ".sst".
bool is_wal_file(std::string_view path) {
  std::string_view name = path.substr(path.rfind('/') + 1);
  constexpr std::string_view kSuffix = ".log";
  if (name.size() <= kSuffix.size() || !name.ends_with(kSuffix)) return false;
  name.remove_suffix(kSuffix.size());
  return std::all_of(name.begin(), name.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Writes zeros over [from, to) of `fd`; false if the file system refused (ENOSPC, EIO).
bool write_zeros(int fd, uint64_t from, uint64_t to) {
  static constexpr std::array<char, 64 << 10> kZeros{};
  while (from < to) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(to - from, kZeros.size()));
    ssize_t written = ::pwrite(fd, kZeros.data(), n, static_cast<off_t>(from));
    if (written < 0 && errno == EINTR) continue;
    if (written <= 0) return false;
    from += static_cast<uint64_t>(written);
  }
  return true;
}

// A WAL file whose records overwrite zeros written ahead of them. RocksDB writes through its own
// descriptor at that descriptor's offset; the zeros go through a second one with pwrite, so the
// two never disturb each other, and RocksDB's fdatasync flushes both, being of the same inode.
class ZeroedWalFile final : public rocksdb::FSWritableFileOwnerWrapper {
 public:
  ZeroedWalFile(std::unique_ptr<rocksdb::FSWritableFile> target, int fd)
      : FSWritableFileOwnerWrapper(std::move(target)), fd_(fd) {}
  ZeroedWalFile(const ZeroedWalFile&) = delete;
  ZeroedWalFile& operator=(const ZeroedWalFile&) = delete;
  ~ZeroedWalFile() override { stop(true); }

  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                           rocksdb::IODebugContext* dbg) override {
    zero_ahead(data.size());
    size_ += data.size();
    return FSWritableFileOwnerWrapper::Append(data, options, dbg);
  }
  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                           const rocksdb::DataVerificationInfo& verification,
                           rocksdb::IODebugContext* dbg) override {
    zero_ahead(data.size());
    size_ += data.size();
    return FSWritableFileOwnerWrapper::Append(data, options, verification, dbg);
  }
  // Only for direct writes, which never get here; should RocksDB use it, this class steps aside
  // rather than guess what the file holds.
  rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& data, uint64_t offset,
                                     const rocksdb::IOOptions& options,
                                     rocksdb::IODebugContext* dbg) override {
    stop(false);
    return FSWritableFileOwnerWrapper::PositionedAppend(data, offset, options, dbg);
  }
  rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& data, uint64_t offset,
                                     const rocksdb::IOOptions& options,
                                     const rocksdb::DataVerificationInfo& verification,
                                     rocksdb::IODebugContext* dbg) override {
    stop(false);
    return FSWritableFileOwnerWrapper::PositionedAppend(data, offset, options, verification, dbg);
  }
  rocksdb::IOStatus Truncate(uint64_t size, const rocksdb::IOOptions& options,
                             rocksdb::IODebugContext* dbg) override {
    size_ = size;
    return FSWritableFileOwnerWrapper::Truncate(size, options, dbg);
  }
  rocksdb::IOStatus Close(const rocksdb::IOOptions& options,
                          rocksdb::IODebugContext* dbg) override {
    auto s = FSWritableFileOwnerWrapper::Close(options, dbg);
    stop(true);
    return s;
  }

 private:
  // Before `n` more bytes are appended: if they would reach past the zeros, zero the next chunk.
  // Should the file system refuse, the file is cut back to its records and appended to as any
  // other; the commit itself then meets the same condition and reports it.
  void zero_ahead(size_t n) {
    if (fd_ < 0 || size_ + n <= zeroed_) return;
    uint64_t from = std::max(zeroed_, size_);
    uint64_t to = (size_ + n + kWalZeroChunk) / kWalZeroChunk * kWalZeroChunk;
    if (write_zeros(fd_, from, to)) {
      zeroed_ = to;
    } else {
      stop(true);
    }
  }

  // No more zeros; with `trim`, the file is cut back to its records, as a file closed normally
  // is. RocksDB has written all it appended by then: Append reaches this class only after
  // RocksDB's own buffer is flushed.
  void stop(bool trim) {
    if (fd_ < 0) return;
    if (trim) (void)::ftruncate(fd_, static_cast<off_t>(size_));
    ::close(fd_);
    fd_ = -1;
  }

  int fd_;
  uint64_t size_ = 0;    // bytes RocksDB has appended
  uint64_t zeroed_ = 0;  // the file holds zeros from size_ up to here
};

class ZeroedWalFileSystem final : public rocksdb::FileSystemWrapper {
 public:
  using FileSystemWrapper::FileSystemWrapper;
  static const char* kClassName() { return "saga.ZeroedWalFileSystem"; }
  const char* Name() const override { return kClassName(); }

  rocksdb::IOStatus NewWritableFile(const std::string& path, const rocksdb::FileOptions& options,
                                    std::unique_ptr<rocksdb::FSWritableFile>* result,
                                    rocksdb::IODebugContext* dbg) override {
    auto s = FileSystemWrapper::NewWritableFile(path, options, result, dbg);
    if (!s.ok() || !is_wal_file(path) || options.use_direct_writes) return s;
    // Without a second descriptor the file is simply appended to, as RocksDB would.
    int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd >= 0) *result = std::make_unique<ZeroedWalFile>(std::move(*result), fd);
    return s;
  }
};

}  // namespace

std::unique_ptr<rocksdb::Env> zeroed_wal_env() {
  return rocksdb::NewCompositeEnv(
      std::make_shared<ZeroedWalFileSystem>(rocksdb::FileSystem::Default()));
}

}  // namespace saga
