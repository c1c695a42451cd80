// The journal: where every transition is made durable before the engine acts on it.
//
// A narrow interface so that another backend (replicated, shared) can replace the embedded
// RocksDB one without touching the core. Records are opaque JSON texts made by the caller.
// Not thread-safe unless a method says so: the daemon calls commit() from its writer thread and
// the rest from the loop thread, which the RocksDB implementation allows.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/error.hpp"
#include "engine/time.hpp"

namespace saga {

// One instance's share of a commit: its new events and, when the instance as a whole changed
// state, its new state record.
struct InstanceWrite {
  std::string id;
  std::string workflow;
  TimePoint created_at{};
  bool created = false;  // first write of this instance: index it for list()
  std::vector<std::pair<uint64_t, std::string>> events;  // seq, event JSON
  // The instance JSON (DESIGN §7 shape, or a header of it), or empty to leave the record as it
  // is. A writer gives it at creation and whenever the instance's state changes, so that the
  // record's `state` is always current while its steps may lag behind the history (which alone
  // rebuilds an instance); a step's progress costs one small history record instead of
  // rewriting the whole instance.
  std::string state;
  bool terminal = false;  // no longer needs recovery
};

struct CommitBatch {
  std::vector<InstanceWrite> instances;
  std::vector<std::pair<std::string, std::string>> definitions;  // version, YAML source
  // Schedule bookkeeping (the scheduler's records: last fire, pause): key -> JSON record, or
  // nullopt to delete the key.
  std::vector<std::pair<std::string, std::optional<std::string>>> schedules;
  // Workflow file path -> the version it last loaded as (a key of `definitions`), or nullopt
  // once the file is gone: what a file that fails to load after a restart keeps serving.
  std::vector<std::pair<std::string, std::optional<std::string>>> file_versions;
};

struct ListFilter {
  std::optional<std::string> state;
  std::optional<std::string> workflow;
  uint32_t limit = 50;
  std::optional<std::string> cursor;  // from a previous page's next_cursor
  // Bounds on one page's work, so that a listing never holds up the loop thread for long: past
  // either the page ends early, possibly empty, with a next_cursor that goes on from there.
  size_t max_examined = 10'000;         // instance records read
  size_t max_bytes = size_t{16} << 20;  // of the records returned (at least one is)
};

// An instance that retention may delete.
struct ExpiredInstance {
  std::string id;
  TimePoint created_at{};
  bool operator==(const ExpiredInstance&) const = default;
};

struct ListPage {
  std::vector<std::string> states;  // instance JSON texts, newest first
  std::optional<std::string> next_cursor;
};

class Journal {
 public:
  virtual ~Journal() = default;

  // Writes the whole batch atomically; durable (fsynced) when the journal was opened with sync
  // durability. Safe to call from one writer thread while the loop thread reads.
  virtual Result<void> commit(const CommitBatch& batch) = 0;

  // The state record of an instance (see InstanceWrite::state), or nullopt.
  virtual Result<std::optional<std::string>> load_state(const std::string& id) = 0;
  // Every event JSON of an instance, in seq order.
  virtual Result<std::vector<std::string>> load_history(const std::string& id) = 0;
  // Calls `fn(id, events)` with the whole history (event JSON, in seq order) of every instance
  // not yet terminal, in id order, from one point in time: what recovery replays.
  virtual Result<void> scan_active_histories(
      const std::function<void(const std::string& id, std::vector<std::string>& events)>& fn) = 0;
  virtual Result<ListPage> list(const ListFilter& filter) = 0;
  virtual Result<std::optional<std::string>> load_definition(const std::string& version) = 0;
  // Up to `limit` terminal instances whose last transition is older than `cutoff`, oldest
  // first. With `scan`, the search starts after `scan->after` and reads at most
  // `scan->max_examined` instances, then leaves in `scan->after` where the next call goes on
  // (empty once it reached the end): a pass costs the loop little however many old instances
  // must stay (failed ones).
  struct ExpiredScan {
    std::string after;
    size_t max_examined = 1000;
  };
  virtual Result<std::vector<ExpiredInstance>> expired(TimePoint cutoff, size_t limit,
                                                       ExpiredScan* scan = nullptr) = 0;
  // Deletes an instance with its history and index entries; `created_at` (from expired()) finds
  // the entry that list() walks.
  virtual Result<void> remove(const std::string& id, TimePoint created_at) = 0;
  // Every schedule record (key, JSON), in key order.
  virtual Result<std::vector<std::pair<std::string, std::string>>> load_schedules() = 0;
  // Every workflow file's last good version (see CommitBatch::file_versions), by path.
  virtual Result<std::map<std::string, std::string>> load_file_versions() = 0;
};

enum class Durability { sync, async };

// Opens (creating when missing) the RocksDB journal in `dir`. Refuses a journal whose format
// version it does not know, with a message naming both versions. A commit is refused, as a
// write error, when the file system holding `dir` has less than `min_free_bytes` available: a
// full disk then stops the journal cleanly, before RocksDB itself runs out of room.
Result<std::unique_ptr<Journal>> open_rocksdb_journal(const std::string& dir, Durability durability,
                                                      uint64_t min_free_bytes = 0);

}  // namespace saga
