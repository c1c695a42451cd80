// A RocksDB environment whose write-ahead log files are filled with zeros ahead of the records.
//
// A synced commit appends to the WAL and then fdatasyncs it. When the append grows the file, the
// sync must also journal the file's new size in the file system (ext4, xfs), which costs a second
// device write: on the machines measured in bench/README.md an appending fdatasync takes 1.5-1.9x
// as long, and as much more kernel CPU, as one that overwrites blocks already written. PostgreSQL
// zero-fills its WAL segments for the same reason.
//
// RocksDB's own answer (recycle_log_file_num) is switched off under point-in-time recovery, so
// this file system writes zeros a chunk ahead of each WAL file's end instead; the records then
// overwrite them. RocksDB's log reader skips zeros as padding, so a file left with a zeroed tail by
// a crash reads exactly as one without; a file closed normally is cut back to its records.
#pragma once

#include <rocksdb/env.h>

#include <cstdint>
#include <memory>

namespace saga {

// Zeros are written this far past the last record, a chunk at a time.
inline constexpr uint64_t kWalZeroChunk = 1 << 20;

// An Env on the default one, except that WAL files ("<number>.log") are zero-filled ahead.
std::unique_ptr<rocksdb::Env> zeroed_wal_env();

}  // namespace saga
