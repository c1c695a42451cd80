#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include <memory>
#include <nlohmann/json.hpp>

#include "journal/journal.hpp"

namespace saga {
namespace {

constexpr const char* kFormatVersion = "1";

enum Cf {
  kDefault,
  kInstances,
  kHistory,
  kActive,
  kByCreated,
  kIndex,
  kDefinitions,
  kMeta,
  kCfCount
};
const char* kCfNames[kCfCount] = {"default",    "instances", "history",     "active",
                                  "by_created", "index",     "definitions", "meta"};

void put_be64(std::string& out, uint64_t v) {
  for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>((v >> (i * 8)) & 0xff));
}

uint64_t get_be64(std::string_view s) {
  uint64_t v = 0;
  for (size_t i = 0; i < 8 && i < s.size(); ++i) v = (v << 8) | static_cast<unsigned char>(s[i]);
  return v;
}

std::string history_prefix(const std::string& id) {
  return id + std::string(1, '\0');
}

std::string created_key(uint64_t created_ms, const std::string& id) {
  std::string key;
  put_be64(key, created_ms);
  key += id;
  return key;
}

std::string to_hex(std::string_view s) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 15]);
  }
  return out;
}

std::optional<std::string> from_hex(std::string_view s) {
  if (s.size() % 2 != 0) return std::nullopt;
  std::string out;
  for (size_t i = 0; i < s.size(); i += 2) {
    auto nibble = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      return -1;
    };
    int hi = nibble(s[i]), lo = nibble(s[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out.push_back(static_cast<char>(hi * 16 + lo));
  }
  return out;
}

std::unexpected<Error> io_error(const std::string& what, const rocksdb::Status& s) {
  return make_error(ErrorCode::unavailable, what + ": " + s.ToString());
}

class RocksDbJournal : public Journal {
 public:
  RocksDbJournal(std::unique_ptr<rocksdb::DB> db, std::vector<rocksdb::ColumnFamilyHandle*> cfs,
                 Durability durability)
      : db_(std::move(db)), cfs_(std::move(cfs)) {
    write_.sync = durability == Durability::sync;
  }

  ~RocksDbJournal() override {
    for (auto* cf : cfs_) db_->DestroyColumnFamilyHandle(cf);
    db_->Close();
  }

  Result<void> commit(const CommitBatch& batch) override {
    rocksdb::WriteBatch wb;
    for (const auto& [version, source] : batch.definitions) {
      wb.Put(cfs_[kDefinitions], version, source);
    }
    std::string key;
    for (const auto& w : batch.instances) {
      for (const auto& [seq, event] : w.events) {
        key = history_prefix(w.id);
        put_be64(key, seq);
        wb.Put(cfs_[kHistory], key, event);
      }
      wb.Put(cfs_[kInstances], w.id, w.state);
      if (w.terminal) {
        wb.Delete(cfs_[kActive], w.id);
      } else {
        wb.Put(cfs_[kActive], w.id, "");
      }
      if (w.created) {
        auto ms = static_cast<uint64_t>(to_unix_ms(w.created_at));
        wb.Put(cfs_[kByCreated], created_key(ms, w.id), "");
        std::string created;
        put_be64(created, ms);
        wb.Put(cfs_[kIndex], w.id, created);
      }
    }
    auto s = db_->Write(write_, &wb);
    if (!s.ok()) return io_error("journal commit failed", s);
    return {};
  }

  Result<std::optional<std::string>> load_state(const std::string& id) override {
    return get(kInstances, id);
  }

  Result<std::vector<std::string>> load_history(const std::string& id) override {
    std::vector<std::string> out;
    std::string prefix = history_prefix(id);
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cfs_[kHistory]));
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
      out.push_back(it->value().ToString());
    }
    if (!it->status().ok()) return io_error("reading the history of " + id, it->status());
    return out;
  }

  Result<void> scan_active(
      const std::function<void(const std::string&, const std::string&)>& fn) override {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cfs_[kActive]));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      std::string id = it->key().ToString();
      auto state = get(kInstances, id);
      if (!state) return std::unexpected(state.error());
      if (*state) fn(id, **state);
    }
    if (!it->status().ok()) return io_error("scanning active instances", it->status());
    return {};
  }

  Result<ListPage> list(const ListFilter& filter) override {
    ListPage page;
    std::unique_ptr<rocksdb::Iterator> it(
        db_->NewIterator(rocksdb::ReadOptions(), cfs_[kByCreated]));
    if (filter.cursor) {
      auto key = from_hex(*filter.cursor);
      if (!key || key->size() < 8) {
        return make_error(ErrorCode::invalid_argument,
                          "bad cursor " + *filter.cursor + "; pass the next_cursor of a page");
      }
      it->SeekForPrev(*key);
      if (it->Valid() && it->key() == rocksdb::Slice(*key)) it->Prev();
    } else {
      it->SeekToLast();
    }
    std::string last_key;
    for (; it->Valid(); it->Prev()) {
      std::string id = it->key().ToString().substr(8);
      auto state = get(kInstances, id);
      if (!state) return std::unexpected(state.error());
      if (!*state) continue;
      if (filter.state || filter.workflow) {
        auto j = nlohmann::json::parse(**state, nullptr, false);
        if (j.is_discarded()) continue;
        if (filter.state && j.value("state", "") != *filter.state) continue;
        if (filter.workflow && j.value("workflow", "") != *filter.workflow) continue;
      }
      if (page.states.size() == filter.limit) {
        page.next_cursor = to_hex(last_key);
        break;
      }
      page.states.push_back(std::move(**state));
      last_key = it->key().ToString();
    }
    if (!it->status().ok()) return io_error("listing instances", it->status());
    return page;
  }

  Result<std::optional<std::string>> load_definition(const std::string& version) override {
    return get(kDefinitions, version);
  }

  Result<std::vector<std::string>> expired(TimePoint cutoff, size_t limit) override {
    std::vector<std::string> out;
    const auto cutoff_ms = static_cast<uint64_t>(to_unix_ms(cutoff));
    std::unique_ptr<rocksdb::Iterator> it(
        db_->NewIterator(rocksdb::ReadOptions(), cfs_[kByCreated]));
    size_t scanned = 0;
    // An instance ends after it was created: only those created before the cutoff can qualify.
    for (it->SeekToFirst(); it->Valid() && out.size() < limit && scanned < 10 * limit;
         it->Next(), ++scanned) {
      std::string key = it->key().ToString();
      if (get_be64(key) >= cutoff_ms) break;
      std::string id = key.substr(8);
      auto state = get(kInstances, id);
      if (!state) return std::unexpected(state.error());
      if (!*state) continue;
      auto j = nlohmann::json::parse(**state, nullptr, false);
      if (j.is_discarded()) continue;
      std::string s = j.value("state", "");
      if (s != "completed" && s != "compensated") continue;
      auto updated = parse_rfc3339(j.value("updated_at", ""));
      if (updated && *updated < cutoff) out.push_back(std::move(id));
    }
    if (!it->status().ok()) return io_error("scanning for expired instances", it->status());
    return out;
  }

  Result<void> remove(const std::string& id) override {
    rocksdb::WriteBatch wb;
    auto created = get(kIndex, id);
    if (!created) return std::unexpected(created.error());
    if (*created) wb.Delete(cfs_[kByCreated], created_key(get_be64(**created), id));
    std::string from = history_prefix(id);
    std::string to = id + std::string(1, '\x01');
    wb.DeleteRange(cfs_[kHistory], from, to);
    wb.Delete(cfs_[kInstances], id);
    wb.Delete(cfs_[kActive], id);
    wb.Delete(cfs_[kIndex], id);
    // Not synced: a deletion lost to a crash is simply made again.
    auto s = db_->Write(rocksdb::WriteOptions(), &wb);
    if (!s.ok()) return io_error("deleting instance " + id, s);
    return {};
  }

 private:
  Result<std::optional<std::string>> get(Cf cf, const std::string& key) {
    std::string value;
    auto s = db_->Get(rocksdb::ReadOptions(), cfs_[cf], key, &value);
    if (s.IsNotFound()) return std::optional<std::string>();
    if (!s.ok()) return io_error(std::string("reading ") + kCfNames[cf], s);
    return std::optional<std::string>(std::move(value));
  }

  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> cfs_;
  rocksdb::WriteOptions write_;
};

}  // namespace

Result<std::unique_ptr<Journal>> open_rocksdb_journal(const std::string& dir,
                                                      Durability durability) {
  rocksdb::Options options;
  options.create_if_missing = true;
  options.create_missing_column_families = true;
  // A daemon that should stay small: modest memtables and file handles, one shared cache.
  options.max_open_files = 256;
  options.keep_log_file_num = 3;
  options.max_background_jobs = 2;
  rocksdb::ColumnFamilyOptions cf_options;
  cf_options.write_buffer_size = 8 << 20;
  cf_options.max_write_buffer_number = 2;
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = rocksdb::NewLRUCache(8 << 20);
  cf_options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));

  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const char* name : kCfNames) descriptors.emplace_back(name, cf_options);
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  auto s = rocksdb::DB::Open(rocksdb::DBOptions(options), dir, descriptors, &handles, &raw);
  if (!s.ok()) {
    if (s.IsIOError() && s.ToString().find("lock") != std::string::npos) {
      return make_error(ErrorCode::unavailable, "state directory " + dir +
                                                    " is in use by another sagad (" + s.ToString() +
                                                    "); stop it or use another --state");
    }
    return make_error(ErrorCode::unavailable,
                      "cannot open the journal in " + dir + ": " + s.ToString());
  }
  std::unique_ptr<rocksdb::DB> db(raw);
  std::string version;
  s = db->Get(rocksdb::ReadOptions(), handles[kMeta], "format_version", &version);
  auto fail = [&](std::string message) -> Result<std::unique_ptr<Journal>> {
    for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
    db->Close();
    return make_error(ErrorCode::unavailable, std::move(message));
  };
  if (s.IsNotFound()) {
    rocksdb::WriteOptions w;
    w.sync = true;
    s = db->Put(w, handles[kMeta], "format_version", kFormatVersion);
    if (!s.ok()) return fail("cannot initialise the journal in " + dir + ": " + s.ToString());
  } else if (!s.ok()) {
    return fail("cannot read the journal format in " + dir + ": " + s.ToString());
  } else if (version != kFormatVersion) {
    return fail("journal in " + dir + " has format version " + version +
                "; this sagad reads format " + kFormatVersion + "; use a matching sagad");
  }
  return std::unique_ptr<Journal>(
      new RocksDbJournal(std::move(db), std::move(handles), durability));
}

}  // namespace saga
