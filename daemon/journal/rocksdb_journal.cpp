// The journal on an embedded RocksDB: one column family per kind of record, every commit a single
// WriteBatch so that an instance's events, its state and its index entries land together or not at
// all.
#include <fmt/format.h>
#include <rocksdb/cache.h>
#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/slice_transform.h>
#include <rocksdb/snapshot.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include <sys/statvfs.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string_view>

#include "journal/journal.hpp"
#include "journal/zeroed_wal.hpp"

namespace saga {

namespace fs = std::filesystem;
namespace {

// Bump when a key or value layout changes, so that an older sagad refuses a newer journal instead
// of misreading it. Format 2: a history value holds every event of one transition, one per line
// (format 1 held one event per value, which format 2 reads as a transition of one event; a
// format-1 journal is marked 2 when opened).
constexpr std::string_view kFormatVersion = "2";
constexpr std::string_view kOlderFormat = "1";
constexpr std::string_view kFormatKey = "format_version";
// Beside the versions (16 hex digits) in the definitions column family.
constexpr std::string_view kFileVersionPrefix = "file:";

// Index into RocksDbJournal::cfs_; kCfNames gives the column family of each.
enum Cf : size_t {
  kDefault,      // unused, but RocksDB always has it
  kInstances,    // id -> state JSON, as of the instance's last change of state
  kHistory,      // id '\0' be64(seq of its first event) -> a transition's event JSONs, '\n' apart
  kActive,       // id -> "" while the instance is not terminal
  kByCreated,    // be64(created ms) id -> "", for list() and expired()
  kIndex,        // id -> be64(created ms): earlier versions wrote it for remove(), which is
                 // now given the creation time; still deleted with its instance
  kDefinitions,  // version -> YAML; "file:" + path -> the version that file last loaded as
  kMeta,         // format_version -> "2"
  // Added within format 1: an older sagad opens a journal with it and leaves it alone, and a
  // journal without it gets it when opened.
  kSchedules,  // scheduler record key ("schedule/WORKFLOW/N", "paused/WORKFLOW") -> JSON
  kCfCount
};
constexpr std::array<std::string_view, kCfCount> kCfNames = {
    "default", "instances",   "history", "active",   "by_created",
    "index",   "definitions", "meta",    "schedules"};

size_t cf_index(std::string_view name) {
  return static_cast<size_t>(std::find(kCfNames.begin(), kCfNames.end(), name) - kCfNames.begin());
}

void put_be64(std::string& out, uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) {
    out.push_back(static_cast<char>((v >> shift) & 0xff));
  }
}

uint64_t get_be64(std::string_view s) {
  uint64_t v = 0;
  for (size_t i = 0; i < 8 && i < s.size(); ++i) v = (v << 8) | static_cast<unsigned char>(s[i]);
  return v;
}

// The '\0' separator keeps one id's events apart from those of an id it is a prefix of ("x" and
// "xy"); it is why ids must not contain '\0'.
std::string history_prefix(std::string_view id) {
  std::string key(id);
  key.push_back('\0');
  return key;
}
// The first key past every history key of `id`.
std::string history_end(std::string_view id) {
  std::string key(id);
  key.push_back('\x01');
  return key;
}
std::string history_key(std::string_view id, uint64_t seq) {
  std::string key = history_prefix(id);
  put_be64(key, seq);
  return key;
}

// One history value for a transition's events. A raw newline can only be whitespace between
// the tokens of a JSON text (inside strings it is escaped), so one that slipped in becomes a
// space and the line stays one event.
std::string history_value(const std::vector<std::pair<uint64_t, std::string>>& events) {
  size_t size = events.size();
  for (const auto& [seq, event] : events) size += event.size();
  std::string value;
  value.reserve(size);
  for (const auto& [seq, event] : events) {
    if (!value.empty()) value.push_back('\n');
    size_t from = value.size();
    value += event;
    // sagad's own event texts have none: memchr finds that out faster than a byte loop.
    if (std::memchr(event.data(), '\n', event.size()) != nullptr) {
      std::replace(value.begin() + static_cast<std::ptrdiff_t>(from), value.end(), '\n', ' ');
    }
  }
  return value;
}

// Appends the events of one history value to `out`.
void split_history_value(std::string_view value, std::vector<std::string>& out) {
  for (;;) {
    size_t end = value.find('\n');
    out.emplace_back(value.substr(0, end));
    if (end == std::string_view::npos) return;
    value.remove_prefix(end + 1);
  }
}

// Big-endian so that byte order is time order: list() walks it backwards for newest first.
std::string by_created_key(uint64_t created_ms, std::string_view id) {
  std::string key;
  put_be64(key, created_ms);
  key += id;
  return key;
}

std::string to_hex(std::string_view bytes) {
  constexpr std::string_view digits = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 15]);
  }
  return out;
}

std::optional<std::string> from_hex(std::string_view text) {
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  if (text.size() % 2 != 0) return std::nullopt;
  std::string out;
  out.reserve(text.size() / 2);
  for (size_t i = 0; i < text.size(); i += 2) {
    int hi = nibble(text[i]);
    int lo = nibble(text[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out.push_back(static_cast<char>(hi * 16 + lo));
  }
  return out;
}

const std::string* string_field(const nlohmann::json& record, const char* field) {
  auto it = record.find(field);
  if (it == record.end() || !it->is_string()) return nullptr;
  return &it->get_ref<const std::string&>();
}

bool string_field_is(const nlohmann::json& record, const char* field, const std::string& want) {
  const std::string* value = string_field(record, field);
  return value != nullptr && *value == want;
}

std::unexpected<Error> storage_error(const std::string& dir, const std::string& operation,
                                     const rocksdb::Status& status) {
  return make_error(ErrorCode::unavailable,
                    "journal in " + dir + ": " + operation + " failed: " + status.ToString());
}

// Where a memtable insert starts its search. RocksDB keeps, per prefix of a key, where the last
// insert of that prefix went, and starts the next one from there instead of from the top of the
// skip list. Here every key has the same (empty) prefix: sagad's instance ids begin with their
// creation time, so an instance's keys in every column family land next to those of the other
// instances in flight, which are the ones written last. Searching from the top was most of the
// journal writer's instructions; callgrind counts 99,600 per saga3 instance with this hint,
// 123,700 with one per instance id. A key elsewhere (an id a client chose) costs about the
// search it would have cost anyway.
//
// With `range_deletions`, the begin key of remove()'s range deletion in the history column family
// ("id\0") is outside the domain: RocksDB 7.8 keeps one hint per prefix for both the point and the
// range-deletion skip lists of a memtable, and a hint from one misleads an insert into the other.
// Point keys there are "id\0" be64(seq); ids hold no NUL.
class NearLastInsert final : public rocksdb::SliceTransform {
 public:
  explicit NearLastInsert(bool range_deletions) : range_deletions_(range_deletions) {}
  const char* Name() const override { return "saga.NearLastInsert"; }
  rocksdb::Slice Transform(const rocksdb::Slice& key) const override { return {key.data(), 0}; }
  bool InDomain(const rocksdb::Slice& key) const override {
    if (!range_deletions_) return true;
    const void* nul = std::memchr(key.data(), '\0', key.size());
    return nul == nullptr ||
           key.size() == static_cast<size_t>(static_cast<const char*>(nul) - key.data()) + 1 +
                             sizeof(uint64_t);
  }

 private:
  bool range_deletions_;
};

// Options for a daemon meant to stay around 32 MiB RSS on a small machine, where throughput is
// bounded by fsyncs rather than by RocksDB's memory.
struct Tuning {
  rocksdb::DBOptions db;
  rocksdb::ColumnFamilyOptions cf;
  // For the column families that every new instance writes.
  rocksdb::ColumnFamilyOptions per_instance;
  // For the history column family, the only one with range deletions.
  rocksdb::ColumnFamilyOptions history;
};

Tuning tuned_options() {
  Tuning t;
  t.db.create_if_missing = true;
  // A fresh journal gets all its column families at open; an existing one only after its format
  // version has been checked (see open_rocksdb_journal).
  t.db.create_missing_column_families = true;
  // Every SST file held open costs a descriptor and a table reader; the daemon also needs
  // descriptors for sockets and step processes under the usual 1024 soft limit.
  t.db.max_open_files = 128;
  // One flush and one compaction at a time are plenty for a journal written at fsync speed, and
  // leave the cores to the steps.
  t.db.max_background_jobs = 2;
  // Each memtable below may reach 3 MiB and 9 column families could add up to 54 MiB; this caps
  // the sum, flushing the largest column family when it is reached. It is most of what sagad's
  // RSS grows by under load: `make bench` measured 32 MiB during saga3 at C=32 with 8 MiB here
  // (4 MiB memtables) and 30 MiB with 6 MiB (3 MiB), for 20 to 30% more background CPU per
  // instance (more, smaller flushes; overwritten states flushed before they were overwritten).
  // 4 MiB with 2 MiB memtables doubled it.
  t.db.db_write_buffer_size = 6 << 20;
  // Rarely written column families (definitions, meta) would otherwise pin old WAL files until
  // their memtable fills, letting the WAL grow to 4x the sum of all write buffers.
  t.db.max_total_wal_size = 32 << 20;
  // Write flush and compaction output back as it goes, instead of one large fsync at the end that
  // the commits' own fsyncs would queue behind.
  t.db.bytes_per_sync = 1 << 20;
  // RocksDB's own LOG in the journal directory: enough to diagnose, bounded on disk.
  t.db.max_log_file_size = 4 << 20;
  t.db.keep_log_file_num = 3;

  // 3 MiB per memtable: a busy column family (instances, history) still flushes files of a useful
  // size; two of them so that writes go on while one is being flushed.
  t.cf.write_buffer_size = 3 << 20;
  t.cf.max_write_buffer_number = 2;
  // The newest levels are rewritten soon by compaction: compressing them costs CPU that the
  // commits share and saves little disk. Deeper levels, where old instances settle, compress.
  t.cf.compression_per_level = {rocksdb::kNoCompression,     rocksdb::kNoCompression,
                                rocksdb::kSnappyCompression, rocksdb::kSnappyCompression,
                                rocksdb::kSnappyCompression, rocksdb::kSnappyCompression,
                                rocksdb::kSnappyCompression};
  // Keeps space amplification low while retention deletes old instances.
  t.cf.level_compaction_dynamic_level_bytes = true;
  // Keys are time-ordered, so each flush lands after what is already in the lowest level, but
  // overlaps the last file there by the instances that were in flight: every compaction out of
  // level 0 rewrites that file. Small files keep that rewrite small (64 MiB files, the default,
  // made compactions write 4x what the flushes did for 60k instances, and 3x the CPU that 4 MiB
  // ones with the trigger below need); eight files per compaction halve how often it happens.
  t.cf.target_file_size_base = 4 << 20;
  t.cf.level0_file_num_compaction_trigger = 8;

  rocksdb::BlockBasedTableOptions table;
  // One small cache shared by every column family (each copy of the options shares the pointer):
  // recent states and events are still in the memtables, older ones are read rarely (inspect, old
  // pages of list) and then come from the page cache.
  table.block_cache = rocksdb::NewLRUCache(4 << 20);
  // Index and filter blocks count against that cache instead of growing with the number of open
  // files; level 0's stay pinned because the newest files are the most read.
  table.cache_index_and_filter_blocks = true;
  table.pin_l0_filter_and_index_blocks_in_cache = true;
  t.cf.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  t.per_instance = t.cf;
  t.per_instance.memtable_insert_with_hint_prefix_extractor =
      std::make_shared<NearLastInsert>(false);
  t.history = t.cf;
  t.history.memtable_insert_with_hint_prefix_extractor = std::make_shared<NearLastInsert>(true);
  return t;
}

const rocksdb::ColumnFamilyOptions& cf_options(const Tuning& tuning, size_t cf) {
  switch (cf) {
    case kHistory:
      return tuning.history;
    case kInstances:
    case kActive:
    case kByCreated:
    case kIndex:
      return tuning.per_instance;
    default:
      return tuning.cf;
  }
}

// RocksDB's lock file is held by another process ("While lock file") or by this one ("lock hold by
// current process"). Failing to create the file ("while open a file for lock") is a different
// problem and is reported as RocksDB words it.
bool is_lock_conflict(const rocksdb::Status& s) {
  if (!s.IsIOError()) return false;
  std::string text = s.ToString();
  return text.find("While lock file") != std::string::npos ||
         text.find("lock hold by current process") != std::string::npos;
}

// A WriteBatch addressed by Cf. Put and Delete only fail past the batch's 4 GiB limit; the first
// failure is kept so that the caller reports it once, before anything is written.
class Batch {
 public:
  // `cfs` must outlive the batch.
  explicit Batch(const std::vector<rocksdb::ColumnFamilyHandle*>& cfs) : cfs_(cfs) {}

  void put(Cf cf, const std::string& key, const std::string& value) {
    keep(wb_.Put(cfs_[cf], key, value));
  }
  void del(Cf cf, const std::string& key) { keep(wb_.Delete(cfs_[cf], key)); }
  void del_range(Cf cf, const std::string& from, const std::string& to) {
    keep(wb_.DeleteRange(cfs_[cf], from, to));
  }
  const rocksdb::Status& status() const { return status_; }
  rocksdb::WriteBatch* write_batch() { return &wb_; }

 private:
  void keep(rocksdb::Status s) {
    if (!s.ok() && status_.ok()) status_ = std::move(s);
  }

  const std::vector<rocksdb::ColumnFamilyHandle*>& cfs_;
  rocksdb::WriteBatch wb_;
  rocksdb::Status status_;
};

class RocksDbJournal final : public Journal {
 public:
  // `cfs` holds kCfCount handles in Cf order, then those of column families this version does not
  // use; the journal destroys them all.
  RocksDbJournal(std::string dir, std::unique_ptr<rocksdb::Env> env,
                 std::unique_ptr<rocksdb::DB> db, std::vector<rocksdb::ColumnFamilyHandle*> cfs,
                 Durability durability, uint64_t min_free_bytes)
      : dir_(std::move(dir)),
        env_(std::move(env)),
        db_(std::move(db)),
        cfs_(std::move(cfs)),
        durability_(durability),
        min_free_bytes_(min_free_bytes) {
    write_options_.sync = durability == Durability::sync;
  }
  RocksDbJournal(const RocksDbJournal&) = delete;
  RocksDbJournal& operator=(const RocksDbJournal&) = delete;

  ~RocksDbJournal() override {
    // An async journal's last commits may still sit in the page cache; a clean stop makes them
    // durable. A failure cannot be acted on here: those commits were acknowledged already.
    if (durability_ == Durability::async) db_->SyncWAL().PermitUncheckedError();
    for (auto* cf : cfs_) db_->DestroyColumnFamilyHandle(cf).PermitUncheckedError();
    db_->Close().PermitUncheckedError();
  }

  Result<void> commit(const CommitBatch& batch) override {
    // RocksDB does not recover from a write that hits a full disk (this version can even abort on
    // the next write to that file): the journal stops short of it, while room is left.
    if (min_free_bytes_ > 0) {
      struct statvfs fs {};
      if (::statvfs(dir_.c_str(), &fs) == 0) {
        uint64_t free = static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize;
        if (free < min_free_bytes_) {
          return make_error(ErrorCode::unavailable,
                            fmt::format("the file system holding the journal in {} has {} KiB "
                                        "free, less than the {} MiB kept in reserve "
                                        "(--min-free-mb)",
                                        dir_, free >> 10, min_free_bytes_ >> 20));
        }
      }
    }
    Batch wb(cfs_);
    for (const auto& [version, source] : batch.definitions) wb.put(kDefinitions, version, source);
    for (const auto& [path, version] : batch.file_versions) {
      if (version) {
        wb.put(kDefinitions, std::string(kFileVersionPrefix) + path, *version);
      } else {
        wb.del(kDefinitions, std::string(kFileVersionPrefix) + path);
      }
    }
    for (const auto& [key, record] : batch.schedules) {
      if (record) {
        wb.put(kSchedules, key, *record);
      } else {
        wb.del(kSchedules, key);
      }
    }
    for (const auto& w : batch.instances) {
      if (w.id.empty() || w.id.find('\0') != std::string::npos) {
        return make_error(ErrorCode::invalid_argument,
                          "instance id \"" + w.id.substr(0, w.id.find('\0')) +
                              "\" cannot be journaled: ids must be non-empty "
                              "and free of NUL");
      }
      if (w.created && w.state.empty()) {
        return make_error(ErrorCode::invalid_argument,
                          "instance " + w.id +
                              " cannot be journaled: its creating write has no "
                              "state record");
      }
      if (!w.events.empty()) {
        wb.put(kHistory, history_key(w.id, w.events.front().first), history_value(w.events));
      }
      if (!w.state.empty()) wb.put(kInstances, w.id, w.state);
      // In the active set from the creating write to the terminal one.
      if (w.terminal) {
        wb.del(kActive, w.id);
      } else if (w.created) {
        wb.put(kActive, w.id, "");
      }
      if (w.created) {
        auto ms = static_cast<uint64_t>(to_unix_ms(w.created_at));
        wb.put(kByCreated, by_created_key(ms, w.id), "");
      }
    }
    if (!wb.status().ok()) return storage_error(dir_, "building a commit", wb.status());
    auto s = db_->Write(write_options_, wb.write_batch());
    if (!s.ok()) return storage_error(dir_, "commit", s);
    return {};
  }

  Result<std::optional<std::string>> load_state(const std::string& id) override {
    return get(rocksdb::ReadOptions(), kInstances, id);
  }

  Result<std::vector<std::string>> load_history(const std::string& id) override {
    std::vector<std::string> events;
    std::string prefix = history_prefix(id);
    std::string end = history_end(id);
    rocksdb::Slice upper(end);
    rocksdb::ReadOptions options;
    // Stops at the id's last event instead of stepping over deleted ranges of other instances to
    // find out that it was the last.
    options.iterate_upper_bound = &upper;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(options, cfs_[kHistory]));
    for (it->Seek(prefix); it->Valid(); it->Next()) {
      split_history_value(it->value().ToStringView(), events);
    }
    if (!it->status().ok()) {
      return storage_error(dir_, "reading the history of " + id, it->status());
    }
    return events;
  }

  Result<void> scan_active_histories(
      const std::function<void(const std::string&, std::vector<std::string>&)>& fn) override {
    rocksdb::ManagedSnapshot snapshot(db_.get());
    rocksdb::ReadOptions options;
    options.snapshot = snapshot.snapshot();
    std::unique_ptr<rocksdb::Iterator> active(db_->NewIterator(options, cfs_[kActive]));
    // Both column families are in id order: one history iterator moves forward through all of
    // them, instead of one iterator per instance.
    std::unique_ptr<rocksdb::Iterator> history(db_->NewIterator(options, cfs_[kHistory]));
    std::vector<std::string> events;
    for (active->SeekToFirst(); active->Valid(); active->Next()) {
      std::string id = active->key().ToString();
      std::string prefix = history_prefix(id);
      events.clear();
      // Where the last history ended, the next one in id order usually begins: Seek (a search
      // of every sorted run) only when the histories of terminal instances lie between.
      if (!history->Valid() || !history->key().starts_with(prefix)) history->Seek(prefix);
      for (; history->Valid() && history->key().starts_with(prefix); history->Next()) {
        split_history_value(history->value().ToStringView(), events);
      }
      if (!history->status().ok()) {
        return storage_error(dir_, "reading the history of " + id, history->status());
      }
      fn(id, events);
    }
    if (!active->status().ok()) {
      return storage_error(dir_, "scanning active instances", active->status());
    }
    return {};
  }

  Result<ListPage> list(const ListFilter& filter) override {
    if (filter.limit == 0) {
      return make_error(ErrorCode::invalid_argument, "list limit must be at least 1");
    }
    // One snapshot for the index and the states, so that a page is one point in time.
    rocksdb::ManagedSnapshot snapshot(db_.get());
    rocksdb::ReadOptions options;
    options.snapshot = snapshot.snapshot();
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(options, cfs_[kByCreated]));
    if (filter.cursor) {
      auto key = from_hex(*filter.cursor);
      if (!key || key->size() <= 8) {
        return make_error(ErrorCode::invalid_argument,
                          "malformed list cursor \"" + filter.cursor->substr(0, 64) +
                              "\"; pass the next_cursor of the previous page unchanged");
      }
      // The cursor is the last item already returned; if it was removed since, SeekForPrev lands on
      // the next older one, which is where the page goes on anyway.
      it->SeekForPrev(*key);
      if (it->Valid() && it->key() == rocksdb::Slice(*key)) it->Prev();
    } else {
      it->SeekToLast();
    }
    ListPage page;
    std::string last_key, page_end;  // the last record examined, and the last one returned
    size_t examined = 0, bytes = 0;
    for (; it->Valid(); it->Prev()) {
      if (examined == filter.max_examined) {
        page.next_cursor = to_hex(last_key);  // the last record examined
        break;
      }
      ++examined;
      last_key = it->key().ToString();
      std::string id = last_key.substr(8);
      auto state = get(options, kInstances, id);
      if (!state) return std::unexpected(state.error());
      if (!*state) continue;
      // The filters need only two fields: a record is parsed whole only when it is a candidate.
      if (filter.state && (*state)->find("\"" + *filter.state + "\"") == std::string::npos) {
        continue;
      }
      if (filter.workflow && (*state)->find("\"" + *filter.workflow + "\"") == std::string::npos) {
        continue;
      }
      // A damaged record is left out rather than failing every listing; recovery reports it.
      auto record = nlohmann::json::parse(**state, nullptr, false);
      if (!record.is_object()) continue;
      if (filter.state && !string_field_is(record, "state", *filter.state)) continue;
      if (filter.workflow && !string_field_is(record, "workflow", *filter.workflow)) continue;
      // Only a further match proves that there is another page.
      if (page.states.size() == filter.limit ||
          (!page.states.empty() && bytes + (*state)->size() > filter.max_bytes)) {
        page.next_cursor = to_hex(page_end);
        break;
      }
      bytes += (*state)->size();
      page.states.push_back(std::move(**state));
      page_end = last_key;
    }
    if (!it->status().ok()) return storage_error(dir_, "listing instances", it->status());
    return page;
  }

  Result<std::optional<std::string>> load_definition(const std::string& version) override {
    return get(rocksdb::ReadOptions(), kDefinitions, version);
  }

  Result<std::map<std::string, std::string>> load_file_versions() override {
    std::map<std::string, std::string> versions;
    std::unique_ptr<rocksdb::Iterator> it(
        db_->NewIterator(rocksdb::ReadOptions(), cfs_[kDefinitions]));
    for (it->Seek(kFileVersionPrefix); it->Valid() && it->key().starts_with(kFileVersionPrefix);
         it->Next()) {
      versions.emplace(it->key().ToString().substr(kFileVersionPrefix.size()),
                       it->value().ToString());
    }
    if (!it->status().ok()) return storage_error(dir_, "reading workflow files", it->status());
    return versions;
  }

  Result<std::vector<ExpiredInstance>> expired(TimePoint cutoff, size_t limit,
                                               ExpiredScan* scan) override {
    std::vector<ExpiredInstance> ids;
    int64_t cutoff_ms = to_unix_ms(cutoff);
    if (limit == 0 || cutoff_ms <= 0) return ids;
    // A last transition never precedes the creation, so the scan ends at instances created at the
    // cutoff: retention reads about as much as it deletes, not the whole journal. It has no other
    // bound, so that old instances which must stay (failed ones) cannot starve the rest.
    std::string end;
    put_be64(end, static_cast<uint64_t>(cutoff_ms));
    rocksdb::Slice upper(end);
    rocksdb::ManagedSnapshot snapshot(db_.get());
    rocksdb::ReadOptions options;
    options.snapshot = snapshot.snapshot();
    options.iterate_upper_bound = &upper;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(options, cfs_[kByCreated]));
    if (scan && !scan->after.empty()) {
      it->Seek(scan->after);
      if (it->Valid() && it->key() == rocksdb::Slice(scan->after)) it->Next();
    } else {
      it->SeekToFirst();
    }
    size_t examined = 0;
    std::string last;
    for (; it->Valid() && ids.size() < limit; it->Next()) {
      if (scan && examined == scan->max_examined) break;
      ++examined;
      last = it->key().ToString();
      std::string id = last.substr(8);
      auto active = get(options, kActive, id);
      if (!active) return std::unexpected(active.error());
      if (*active) continue;
      auto state = get(options, kInstances, id);
      if (!state) return std::unexpected(state.error());
      if (!*state) continue;
      auto record = nlohmann::json::parse(**state, nullptr, false);
      if (!record.is_object()) continue;
      // Only instances that ended for good; failed ones wait for an operator's retry or cancel.
      const std::string* state_name = string_field(record, "state");
      if (state_name == nullptr || (*state_name != "completed" && *state_name != "compensated")) {
        continue;
      }
      // An instance whose last transition cannot be read is kept: a deletion cannot be undone.
      const std::string* updated_at = string_field(record, "updated_at");
      if (updated_at == nullptr) continue;
      auto updated = parse_rfc3339(*updated_at);
      if (updated && *updated < cutoff) {
        ids.push_back({std::move(id),
                       from_unix_ms(static_cast<int64_t>(get_be64(it->key().ToStringView())))});
      }
    }
    if (!it->status().ok()) return storage_error(dir_, "finding expired instances", it->status());
    if (scan) scan->after = it->Valid() ? last : std::string();
    return ids;
  }

  Result<void> remove(const std::string& id, TimePoint created_at) override {
    Batch wb(cfs_);
    wb.del(kByCreated, by_created_key(static_cast<uint64_t>(to_unix_ms(created_at)), id));
    wb.del_range(kHistory, history_prefix(id), history_end(id));
    wb.del(kInstances, id);
    wb.del(kActive, id);
    wb.del(kIndex, id);
    if (!wb.status().ok()) return storage_error(dir_, "deleting instance " + id, wb.status());
    // Not synced: a deletion lost to a crash is simply made again by the next retention pass.
    auto s = db_->Write(rocksdb::WriteOptions(), wb.write_batch());
    if (!s.ok()) return storage_error(dir_, "deleting instance " + id, s);
    return {};
  }

  Result<std::vector<std::pair<std::string, std::string>>> load_schedules() override {
    std::vector<std::pair<std::string, std::string>> records;
    std::unique_ptr<rocksdb::Iterator> it(
        db_->NewIterator(rocksdb::ReadOptions(), cfs_[kSchedules]));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      records.emplace_back(it->key().ToString(), it->value().ToString());
    }
    if (!it->status().ok()) return storage_error(dir_, "reading schedules", it->status());
    return records;
  }

 private:
  Result<std::optional<std::string>> get(const rocksdb::ReadOptions& options, Cf cf,
                                         const std::string& key) {
    std::string value;
    auto s = db_->Get(options, cfs_[cf], key, &value);
    if (s.IsNotFound()) return std::optional<std::string>();
    if (!s.ok()) return storage_error(dir_, "reading " + std::string(kCfNames[cf]) + " " + key, s);
    return std::optional<std::string>(std::move(value));
  }

  const std::string dir_;
  // The database's Env when it is not RocksDB's default; outlives the database.
  std::unique_ptr<rocksdb::Env> env_;
  // RocksDB is thread-safe: commit() runs on the writer thread while the loop thread reads.
  std::unique_ptr<rocksdb::DB> db_;
  const std::vector<rocksdb::ColumnFamilyHandle*> cfs_;
  const Durability durability_;
  const uint64_t min_free_bytes_;
  rocksdb::WriteOptions write_options_;
};

}  // namespace

namespace {

bool is_database_file(const std::string& name) {
  return name == "CURRENT" || name.starts_with("MANIFEST-") || name.ends_with(".sst") ||
         name.ends_with(".log") || name.ends_with(".blob");
}

// Hard links to a database's files, made before RocksDB opens it and dropped once it has proved
// to be our journal. A MANIFEST damaged in a way RocksDB does not notice opens as an empty
// database, and RocksDB then deletes the files it no longer knows as obsolete: put back, they
// stay for a restore.
class KeptFiles {
 public:
  explicit KeptFiles(const std::string& dir) : dir_(dir), keep_(fs::path(dir) / "saga-keep") {
    std::error_code ec;
    // Left by a crash in between: what is missing from dir goes back (RocksDB deletes again what
    // it no longer needs), the rest is dropped.
    for (auto it = fs::directory_iterator(keep_, ec); !ec && it != fs::directory_iterator();
         it.increment(ec)) {
      std::error_code move_ec;
      const fs::path back = fs::path(dir_) / it->path().filename();
      if (!fs::exists(back, move_ec)) fs::rename(it->path(), back, move_ec);
    }
    fs::remove_all(keep_, ec);
    ec.clear();
    for (auto it = fs::directory_iterator(dir_, ec); !ec && it != fs::directory_iterator();
         it.increment(ec)) {
      const std::string name = it->path().filename().string();
      if (!is_database_file(name)) continue;
      holds_files_ = true;
      if (!it->is_regular_file()) continue;
      std::error_code link_ec;
      if (names_.empty()) fs::create_directory(keep_, link_ec);
      fs::create_hard_link(it->path(), keep_ / name, link_ec);
      if (!link_ec) names_.push_back(name);
    }
  }
  KeptFiles(const KeptFiles&) = delete;
  KeptFiles& operator=(const KeptFiles&) = delete;
  ~KeptFiles() {
    std::error_code ec;
    fs::remove_all(keep_, ec);
  }

  // Whether the directory held a database's files (not its LOCK or info LOG, which a failed
  // open leaves behind too).
  bool held_files() const { return holds_files_; }

  // Whether it held tables: a journal has them only after its format version was written (a
  // first start writes that before anything else), so tables without one mean a lost MANIFEST.
  bool held_tables() const {
    return std::any_of(names_.begin(), names_.end(), [](const std::string& n) {
      return n.ends_with(".sst") || n.ends_with(".blob");
    });
  }

  // Puts every kept file back as it was (CURRENT included).
  void restore() {
    for (const std::string& name : names_) {
      std::error_code ec;
      fs::rename(keep_ / name, fs::path(dir_) / name, ec);
    }
  }

 private:
  std::string dir_;
  fs::path keep_;
  std::vector<std::string> names_;  // linked into keep_
  bool holds_files_ = false;
};

}  // namespace

Result<std::unique_ptr<Journal>> open_rocksdb_journal(const std::string& dir, Durability durability,
                                                      uint64_t min_free_bytes) {
  Tuning tuning = tuned_options();
  // Every synced commit is an fdatasync of the WAL: overwriting zeros makes each one cheaper.
  std::unique_ptr<rocksdb::Env> env;
  if (durability == Durability::sync) {
    env = zeroed_wal_env();
    tuning.db.env = env.get();
  }
  // Flushes and compactions run at the lowest CPU priority (nice 19): on a small machine they
  // would otherwise take a core from the loop and the journal writer, whose turnaround is every
  // instance's latency. They lose nothing for it: when memtables fill up, RocksDB holds the
  // commits back, the daemon idles and the flush gets the CPU. `make bench`, one sitting on two
  // cores: 10 to 20% more instances/s at every concurrency, with the fdatasync of a commit
  // waiting less often for a core after the disk has answered.
  rocksdb::Env* pools = env ? env.get() : rocksdb::Env::Default();
  for (auto pool : {rocksdb::Env::Priority::LOW, rocksdb::Env::Priority::HIGH}) {
    pools->LowerThreadPoolCPUPriority(pool, rocksdb::CpuPriority::kLow).PermitUncheckedError();
  }

  // An existing journal is opened with exactly the column families it has, so that nothing is
  // created in it before its format version has been checked; a newer format may also have column
  // families this version does not know, and RocksDB refuses to open without them.
  std::vector<std::string> existing;
  KeptFiles kept(dir);
  const rocksdb::Status listed = rocksdb::DB::ListColumnFamilies(tuning.db, dir, &existing);
  const bool fresh = !listed.ok();
  // Only an empty directory starts a new journal. One whose database cannot be read (a damaged or
  // missing CURRENT or MANIFEST) would otherwise be opened as a new, empty journal, and RocksDB
  // would delete its data files as obsolete: every instance in it lost.
  if (fresh) {
    if (kept.held_files()) {
      return make_error(
          ErrorCode::failed_precondition,
          "the journal in " + dir + " cannot be read (" + listed.ToString() +
              "), and it holds a database's files: sagad does not start a new "
              "journal over them. Restore the state directory from a backup, or move " +
              dir + " away to start with an empty journal");
    }
  }
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  if (fresh) {
    for (auto name : kCfNames) {
      descriptors.emplace_back(std::string(name), cf_options(tuning, cf_index(name)));
    }
  } else {
    for (const auto& name : existing) {
      descriptors.emplace_back(name, cf_index(name) < kCfCount ? cf_options(tuning, cf_index(name))
                                                               : rocksdb::ColumnFamilyOptions());
    }
  }

  // Owns every handle until the journal takes them over.
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  auto s = rocksdb::DB::Open(tuning.db, dir, descriptors, &handles, &raw);
  if (!s.ok()) {
    if (is_lock_conflict(s)) {
      return make_error(ErrorCode::unavailable, "state directory " + dir +
                                                    " is in use by another sagad (" + s.ToString() +
                                                    "); stop it or give this one another --state");
    }
    return make_error(ErrorCode::unavailable,
                      "cannot open the journal in " + dir + ": " + s.ToString());
  }
  std::unique_ptr<rocksdb::DB> db(raw);
  auto fail = [&](ErrorCode code, std::string message) -> Result<std::unique_ptr<Journal>> {
    for (auto* h : handles) db->DestroyColumnFamilyHandle(h).PermitUncheckedError();
    db->Close().PermitUncheckedError();
    return make_error(code, std::move(message));
  };

  std::vector<rocksdb::ColumnFamilyHandle*> cfs(kCfCount, nullptr);
  std::vector<rocksdb::ColumnFamilyHandle*> unknown;
  for (auto* h : handles) {
    size_t i = cf_index(h->GetName());
    if (i < kCfCount) {
      cfs[i] = h;
    } else {
      unknown.push_back(h);
    }
  }

  std::optional<std::string> version;
  if (cfs[kMeta] != nullptr) {
    std::string found;
    s = db->Get(rocksdb::ReadOptions(), cfs[kMeta], std::string(kFormatKey), &found);
    if (s.ok()) {
      version = std::move(found);
    } else if (!s.IsNotFound()) {
      return fail(ErrorCode::unavailable,
                  "cannot read the format version of the journal in " + dir + ": " + s.ToString());
    }
  }
  if (version && *version != kFormatVersion && *version != kOlderFormat) {
    return fail(ErrorCode::failed_precondition,
                "journal in " + dir + " has format version " + *version +
                    "; this sagad reads format " + std::string(kFormatVersion) + " (and " +
                    std::string(kOlderFormat) + ", which it upgrades); use a matching sagad");
  }
  // Without a version, only a journal whose first start was interrupted (some of our column
  // families and nothing else) is ours to complete; anything more is another program's database,
  // or ours with its MANIFEST damaged, which RocksDB opened as an empty database.
  if (!version && kept.held_tables()) {
    auto refused = fail(ErrorCode::failed_precondition,
                        "the journal in " + dir +
                            " opens without its format version although it holds tables: its "
                            "MANIFEST is damaged, and sagad does not start a new journal over "
                            "them. Restore the state directory from a backup");
    kept.restore();  // once the database is closed
    return refused;
  }
  if (!version && !unknown.empty()) {
    return fail(ErrorCode::failed_precondition,
                "directory " + dir +
                    " holds a RocksDB database that is not a saga journal "
                    "(column family " +
                    unknown.front()->GetName() +
                    ", no format version); give sagad another --state");
  }

  for (size_t i = 0; i < kCfCount; ++i) {
    if (cfs[i] != nullptr) continue;
    s = db->CreateColumnFamily(cf_options(tuning, i), std::string(kCfNames[i]), &cfs[i]);
    if (!s.ok()) {
      return fail(ErrorCode::unavailable, "cannot create column family " +
                                              std::string(kCfNames[i]) + " in the journal in " +
                                              dir + ": " + s.ToString());
    }
    handles.push_back(cfs[i]);
  }
  // A format-1 journal reads as format 2; marking it keeps a sagad that reads only format 1 from
  // misreading the transitions written from now on.
  if (version != kFormatVersion) {
    rocksdb::WriteOptions sync;
    sync.sync = true;
    s = db->Put(sync, cfs[kMeta], std::string(kFormatKey), std::string(kFormatVersion));
    if (!s.ok()) {
      return fail(ErrorCode::unavailable,
                  "cannot write the format version of the journal in " + dir + ": " + s.ToString());
    }
  }

  cfs.insert(cfs.end(), unknown.begin(), unknown.end());
  return std::unique_ptr<Journal>(new RocksDbJournal(dir, std::move(env), std::move(db),
                                                     std::move(cfs), durability, min_free_bytes));
}

}  // namespace saga
