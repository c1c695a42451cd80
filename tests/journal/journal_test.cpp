#include <fcntl.h>
#include <rocksdb/db.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <thread>

#include "journal/journal.hpp"
#include "journal/zeroed_wal.hpp"
#include "temp_dir.hpp"

using namespace saga;
namespace fs = std::filesystem;

namespace {

using test::TempDir;

std::string state_json(const std::string& id, const std::string& state,
                       const std::string& workflow = "wf",
                       const std::string& updated_at = "2026-01-01T00:00:00.000Z") {
  return R"({"id":")" + id + R"(","workflow":")" + workflow + R"(","state":")" + state +
         R"(","updated_at":")" + updated_at + R"("})";
}

std::string event_json(uint64_t seq) {
  return "{\"seq\":" + std::to_string(seq) + "}";
}

// Events first_seq .. first_seq + count - 1.
InstanceWrite instance_write(const std::string& id, int64_t created_ms, std::string state,
                             bool terminal, uint64_t first_seq, int count, bool created) {
  InstanceWrite w;
  w.id = id;
  w.workflow = "wf";
  w.created_at = from_unix_ms(created_ms);
  w.created = created;
  for (int i = 0; i < count; ++i) w.events.emplace_back(first_seq + i, event_json(first_seq + i));
  w.state = std::move(state);
  w.terminal = terminal;
  return w;
}

std::unique_ptr<Journal> open_ok(const std::string& dir, Durability durability = Durability::sync) {
  auto j = open_rocksdb_journal(dir, durability);
  if (!j) FAIL("open: " << j.error().message);
  return std::move(*j);
}

void commit_ok(Journal& j, const CommitBatch& batch) {
  auto r = j.commit(batch);
  if (!r) FAIL("commit: " << r.error().message);
}

std::vector<std::string> active_ids(Journal& j) {
  std::vector<std::string> ids;
  auto r = j.scan_active_histories(
      [&](const std::string& id, std::vector<std::string>&) { ids.push_back(id); });
  REQUIRE(r.has_value());
  std::sort(ids.begin(), ids.end());
  return ids;
}

std::string id_of(const std::string& state) {
  auto start = state.find(R"("id":")") + 6;
  return state.substr(start, state.find('"', start) - start);
}

std::vector<std::string> ids_of(const ListPage& page) {
  std::vector<std::string> ids;
  for (const auto& s : page.states) ids.push_back(id_of(s));
  return ids;
}

// Every page of a listing, as ids, following next_cursor.
std::vector<std::vector<std::string>> all_pages(Journal& j, ListFilter filter) {
  std::vector<std::vector<std::string>> pages;
  for (int guard = 0; guard < 100; ++guard) {
    auto page = j.list(filter);
    REQUIRE(page.has_value());
    pages.push_back(ids_of(*page));
    if (!page->next_cursor) return pages;
    filter.cursor = page->next_cursor;
  }
  FAIL("listing does not end");
  return pages;
}

// A plain RocksDB database in `dir` with the given column families, for journals that this sagad
// did not write. `puts` are (column family, key, value).
void make_raw_db(const std::string& dir, const std::vector<std::string>& cf_names,
                 const std::vector<std::tuple<std::string, std::string, std::string>>& puts) {
  rocksdb::DBOptions options;
  options.create_if_missing = true;
  options.create_missing_column_families = true;
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
  for (const auto& n : cf_names) cfs.emplace_back(n, rocksdb::ColumnFamilyOptions());
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* db = nullptr;
  REQUIRE(rocksdb::DB::Open(options, dir, cfs, &handles, &db).ok());
  for (const auto& [cf, key, value] : puts) {
    auto it = std::find(cf_names.begin(), cf_names.end(), cf);
    REQUIRE(it != cf_names.end());
    REQUIRE(db->Put(rocksdb::WriteOptions(), handles[it - cf_names.begin()], key, value).ok());
  }
  for (auto* h : handles) REQUIRE(db->DestroyColumnFamilyHandle(h).ok());
  REQUIRE(db->Close().ok());
  delete db;
}

std::vector<std::string> raw_cf_names(const std::string& dir) {
  std::vector<std::string> names;
  REQUIRE(rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), dir, &names).ok());
  std::sort(names.begin(), names.end());
  return names;
}

std::string raw_format_version(const std::string& dir) {
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
  cfs.emplace_back(rocksdb::kDefaultColumnFamilyName, rocksdb::ColumnFamilyOptions());
  cfs.emplace_back("meta", rocksdb::ColumnFamilyOptions());
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* db = nullptr;
  REQUIRE(rocksdb::DB::OpenForReadOnly(rocksdb::DBOptions(), dir, cfs, &handles, &db).ok());
  std::string version;
  auto s = db->Get(rocksdb::ReadOptions(), handles[1], "format_version", &version);
  for (auto* h : handles) REQUIRE(db->DestroyColumnFamilyHandle(h).ok());
  delete db;
  REQUIRE(s.ok());
  return version;
}

// Every key of one column family of a closed journal.
std::vector<std::string> raw_keys(const std::string& dir, const std::string& cf) {
  std::vector<std::string> names;
  REQUIRE(rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), dir, &names).ok());
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
  for (const auto& n : names) cfs.emplace_back(n, rocksdb::ColumnFamilyOptions());
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* db = nullptr;
  REQUIRE(rocksdb::DB::OpenForReadOnly(rocksdb::DBOptions(), dir, cfs, &handles, &db).ok());
  auto at = std::find(names.begin(), names.end(), cf);
  REQUIRE(at != names.end());
  std::vector<std::string> keys;
  {
    std::unique_ptr<rocksdb::Iterator> it(
        db->NewIterator(rocksdb::ReadOptions(), handles[at - names.begin()]));
    for (it->SeekToFirst(); it->Valid(); it->Next()) keys.push_back(it->key().ToString());
  }
  for (auto* h : handles) REQUIRE(db->DestroyColumnFamilyHandle(h).ok());
  delete db;
  return keys;
}

}  // namespace

TEST_CASE("committed state, history and active set survive a reopen") {
  TempDir dir;
  {
    auto j = open_ok(dir.path);
    CommitBatch b;
    b.instances.push_back(instance_write("a", 1000, state_json("a", "running"), false, 1, 2, true));
    // Seqs across a byte boundary: a wrong key encoding would put 256.. before 255.
    b.instances.push_back(
        instance_write("b", 2000, state_json("b", "running"), false, 250, 6, true));
    commit_ok(*j, b);
    CommitBatch c;
    c.instances.push_back(
        instance_write("b", 2000, state_json("b", "completed"), true, 256, 7, false));
    commit_ok(*j, c);
  }
  auto j = open_ok(dir.path);
  auto history = j->load_history("b");
  REQUIRE(history.has_value());
  std::vector<std::string> expected;
  for (uint64_t seq = 250; seq <= 262; ++seq) expected.push_back(event_json(seq));
  CHECK(*history == expected);
  CHECK(*j->load_history("a") == std::vector<std::string>{event_json(1), event_json(2)});
  CHECK(j->load_history("nobody")->empty());

  CHECK(j->load_state("a")->value() == state_json("a", "running"));
  CHECK(j->load_state("b")->value() == state_json("b", "completed"));
  CHECK_FALSE(j->load_state("zzz")->has_value());

  std::vector<std::pair<std::string, std::vector<std::string>>> active;
  REQUIRE(j->scan_active_histories([&](const std::string& id, std::vector<std::string>& events) {
             active.emplace_back(id, events);
           }).has_value());
  REQUIRE(active.size() == 1);
  CHECK(active[0].first == "a");
  CHECK(active[0].second == std::vector<std::string>{event_json(1), event_json(2)});
}

TEST_CASE("an instance is in the active set from its creating write to its terminal one") {
  TempDir dir;
  auto j = open_ok(dir.path);
  CommitBatch b;
  b.instances.push_back(instance_write("x", 1, state_json("x", "running"), false, 1, 1, true));
  b.instances.push_back(instance_write("y", 2, state_json("y", "running"), false, 1, 1, true));
  commit_ok(*j, b);
  CHECK(active_ids(*j) == std::vector<std::string>{"x", "y"});

  // A failed instance waits for an operator: still active.
  CommitBatch failed;
  failed.instances.push_back(instance_write("x", 1, state_json("x", "failed"), false, 2, 1, false));
  commit_ok(*j, failed);
  CHECK(active_ids(*j) == std::vector<std::string>{"x", "y"});

  CommitBatch done;
  done.instances.push_back(instance_write("x", 1, state_json("x", "completed"), true, 3, 1, false));
  commit_ok(*j, done);
  CHECK(active_ids(*j) == std::vector<std::string>{"y"});
}

TEST_CASE("a transition's events are one history record and read back one by one") {
  TempDir dir;
  {
    auto j = open_ok(dir.path);
    CommitBatch b;
    b.instances.push_back(instance_write("a", 1, state_json("a", "running"), false, 1, 3, true));
    commit_ok(*j, b);
    CommitBatch next;
    auto w = instance_write("a", 1, state_json("a", "running"), false, 4, 2, false);
    // A raw newline can only be whitespace between JSON tokens: it must not split the event.
    w.events[1].second = "{\"seq\":5,\n\"step\":\"b\"}";
    next.instances.push_back(std::move(w));
    commit_ok(*j, next);
    CHECK(*j->load_history("a") == std::vector<std::string>{event_json(1), event_json(2),
                                                            event_json(3), event_json(4),
                                                            "{\"seq\":5, \"step\":\"b\"}"});
  }
  // Two transitions, two records.
  CHECK(raw_keys(dir.path, "history").size() == 2);
  auto j = open_ok(dir.path);
  std::vector<std::string> scanned;
  REQUIRE(j->scan_active_histories([&](const std::string&, std::vector<std::string>& events) {
             scanned = events;
           }).has_value());
  CHECK(scanned.size() == 5);
  CHECK(scanned.front() == event_json(1));
}

TEST_CASE("a write without a state record appends history and leaves the record as it was") {
  TempDir dir;
  {
    auto j = open_ok(dir.path);
    CommitBatch b;
    b.instances.push_back(
        instance_write("a", 1, state_json("a", "running", "wf", "t1"), false, 1, 2, true));
    commit_ok(*j, b);
    CommitBatch progress;
    progress.instances.push_back(instance_write("a", 1, "", false, 3, 2, false));
    commit_ok(*j, progress);
    CHECK(*j->load_state("a") == state_json("a", "running", "wf", "t1"));
    CHECK(j->load_history("a")->size() == 4);
    CHECK(ids_of(*j->list({})) == std::vector<std::string>{"a"});
    CommitBatch done;
    done.instances.push_back(
        instance_write("a", 1, state_json("a", "completed", "wf", "t3"), true, 5, 1, false));
    commit_ok(*j, done);
  }
  // The record only changed with the state: two records, three transitions.
  CHECK(raw_keys(dir.path, "history").size() == 3);
  auto j = open_ok(dir.path);
  CHECK(*j->load_state("a") == state_json("a", "completed", "wf", "t3"));
  CHECK(j->load_history("a")->size() == 5);
  CHECK(active_ids(*j).empty());
}

TEST_CASE("a creating write without a state record is refused and nothing of its batch lands") {
  TempDir dir;
  auto j = open_ok(dir.path);
  CommitBatch b;
  b.instances.push_back(instance_write("a", 1, state_json("a", "running"), false, 1, 1, true));
  b.instances.push_back(instance_write("b", 2, "", false, 1, 1, true));
  auto r = j->commit(b);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().message ==
        "instance b cannot be journaled: its creating write has no state "
        "record");
  CHECK_FALSE(*j->load_state("a"));
  CHECK(active_ids(*j).empty());
}

TEST_CASE("recovery's scan gives each active instance its whole history, in id order") {
  TempDir dir;
  auto j = open_ok(dir.path);
  CommitBatch b;
  // "a" and "a\x01"-like neighbours must not bleed into each other's history.
  b.instances.push_back(instance_write("b", 1, state_json("b", "running"), false, 1, 3, true));
  b.instances.push_back(instance_write("a", 2, state_json("a", "running"), false, 1, 2, true));
  b.instances.push_back(instance_write("ab", 3, state_json("ab", "running"), false, 1, 1, true));
  b.instances.push_back(
      instance_write("done", 4, state_json("done", "completed"), true, 1, 4, true));
  commit_ok(*j, b);
  CommitBatch more;
  more.instances.push_back(instance_write("a", 2, state_json("a", "running"), false, 3, 2, false));
  commit_ok(*j, more);

  std::vector<std::pair<std::string, std::vector<std::string>>> seen;
  REQUIRE(j->scan_active_histories([&](const std::string& id, std::vector<std::string>& events) {
             seen.emplace_back(id, events);
           }).has_value());
  REQUIRE(seen.size() == 3);
  CHECK(seen[0].first == "a");
  CHECK(seen[0].second ==
        std::vector<std::string>{event_json(1), event_json(2), event_json(3), event_json(4)});
  CHECK(seen[1].first == "ab");
  CHECK(seen[1].second == std::vector<std::string>{event_json(1)});
  CHECK(seen[2].first == "b");
  CHECK(seen[2].second == std::vector<std::string>{event_json(1), event_json(2), event_json(3)});
}

TEST_CASE("several writes of one instance in a batch apply in order") {
  // What group commit produces: a start and the transitions that followed it.
  TempDir dir;
  auto j = open_ok(dir.path);
  CommitBatch b;
  b.instances.push_back(instance_write("g", 10, state_json("g", "running"), false, 1, 2, true));
  b.instances.push_back(instance_write("g", 10, state_json("g", "completed"), true, 3, 2, false));
  commit_ok(*j, b);
  CHECK(j->load_state("g")->value() == state_json("g", "completed"));
  CHECK(j->load_history("g")->size() == 4);
  CHECK(active_ids(*j).empty());
  CHECK(all_pages(*j, ListFilter{}) == std::vector<std::vector<std::string>>{{"g"}});
}

TEST_CASE("an async journal keeps its commits across a clean close") {
  TempDir dir;
  {
    auto j = open_ok(dir.path, Durability::async);
    CommitBatch b;
    b.instances.push_back(instance_write("a", 1, state_json("a", "running"), false, 1, 3, true));
    commit_ok(*j, b);
  }
  auto j = open_ok(dir.path, Durability::sync);
  CHECK(j->load_state("a")->value() == state_json("a", "running"));
  CHECK(j->load_history("a")->size() == 3);
}

TEST_CASE("an id with NUL is refused and nothing of its batch is written") {
  TempDir dir;
  auto j = open_ok(dir.path);
  CommitBatch b;
  b.instances.push_back(instance_write("ok", 1, state_json("ok", "running"), false, 1, 1, true));
  b.instances.push_back(
      instance_write(std::string("a\0b", 3), 2, state_json("a", "running"), false, 1, 1, true));
  auto r = j->commit(b);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == ErrorCode::invalid_argument);
  CHECK_FALSE(j->load_state("ok")->has_value());
}

TEST_CASE("list pages newest first") {
  TempDir dir;
  auto j = open_ok(dir.path);
  CommitBatch b;
  for (int i = 0; i < 7; ++i) {
    std::string id = "i" + std::to_string(i);
    b.instances.push_back(
        instance_write(id, 1000 + i, state_json(id, "completed"), true, 1, 1, true));
  }
  commit_ok(*j, b);

  ListFilter f;
  f.limit = 3;
  CHECK(all_pages(*j, f) ==
        std::vector<std::vector<std::string>>{{"i6", "i5", "i4"}, {"i3", "i2", "i1"}, {"i0"}});
  f.limit = 7;
  auto exact = j->list(f);
  REQUIRE(exact.has_value());
  CHECK(exact->states.size() == 7);
  CHECK_FALSE(exact->next_cursor.has_value());  // no empty page after a full one
  f.limit = 50;
  CHECK(all_pages(*j, f).size() == 1);

  SECTION("a cursor whose item was removed since goes on with the next older one") {
    ListFilter first;
    first.limit = 3;
    auto page = j->list(first);
    REQUIRE(page.has_value());
    REQUIRE(page->next_cursor.has_value());
    REQUIRE(j->remove("i4", from_unix_ms(1004)).has_value());
    REQUIRE(j->remove("i3", from_unix_ms(1003)).has_value());
    first.cursor = page->next_cursor;
    auto next = j->list(first);
    REQUIRE(next.has_value());
    CHECK(ids_of(*next) == std::vector<std::string>{"i2", "i1", "i0"});
    CHECK_FALSE(next->next_cursor.has_value());
  }
}

TEST_CASE(
    "list orders instances created in the same millisecond and pages "
    "through them") {
  TempDir dir;
  auto j = open_ok(dir.path);
  CommitBatch b;
  for (std::string id : {"a", "b", "c"}) {
    b.instances.push_back(instance_write(id, 5000, state_json(id, "running"), false, 1, 1, true));
  }
  commit_ok(*j, b);
  ListFilter f;
  f.limit = 1;
  CHECK(all_pages(*j, f) == std::vector<std::vector<std::string>>{{"c"}, {"b"}, {"a"}});
}

TEST_CASE("list filters by state and workflow, also across pages") {
  TempDir dir;
  auto j = open_ok(dir.path);
  CommitBatch b;
  for (int i = 0; i < 7; ++i) {
    std::string id = "i" + std::to_string(i);
    b.instances.push_back(instance_write(
        id, 1000 + i, state_json(id, i % 2 ? "failed" : "completed", i < 5 ? "wf" : "other"), true,
        1, 1, true));
  }
  commit_ok(*j, b);

  ListFilter f;
  f.state = "failed";
  CHECK(all_pages(*j, f) == std::vector<std::vector<std::string>>{{"i5", "i3", "i1"}});
  f.limit = 2;
  CHECK(all_pages(*j, f) == std::vector<std::vector<std::string>>{{"i5", "i3"}, {"i1"}});
  f = ListFilter{};
  f.workflow = "other";
  CHECK(all_pages(*j, f) == std::vector<std::vector<std::string>>{{"i6", "i5"}});
  f.state = "completed";
  CHECK(all_pages(*j, f) == std::vector<std::vector<std::string>>{{"i6"}});
  f.state = "running";
  CHECK(all_pages(*j, f) == std::vector<std::vector<std::string>>{{}});
}

TEST_CASE("a page examines a bounded number of records and returns a bounded number of bytes") {
  TempDir dir;
  auto j = open_ok(dir.path);
  CommitBatch b;
  for (int i = 0; i < 7; ++i) {
    std::string id = "i" + std::to_string(i);
    b.instances.push_back(instance_write(
        id, 1000 + i, state_json(id, i == 0 || i == 6 ? "failed" : "completed"), true, 1, 1, true));
  }
  commit_ok(*j, b);

  // Few matches far apart: pages end early, even empty, and the listing still finds them all.
  ListFilter f;
  f.state = "failed";
  f.max_examined = 2;
  CHECK(all_pages(*j, f) == std::vector<std::vector<std::string>>{{"i6"}, {}, {}, {"i0"}});
  f.max_examined = 10'000;
  CHECK(all_pages(*j, f) == std::vector<std::vector<std::string>>{{"i6", "i0"}});

  // Large records: a page holds as many as fit, and always at least one.
  ListFilter g;
  const size_t one = state_json("i0", "completed").size();
  g.max_bytes = 2 * one + 1;
  CHECK(all_pages(*j, g) ==
        std::vector<std::vector<std::string>>{{"i6", "i5"}, {"i4", "i3"}, {"i2", "i1"}, {"i0"}});
  g.max_bytes = 1;
  CHECK(all_pages(*j, g).size() == 7);
}

TEST_CASE("a malformed cursor or a zero limit is an invalid argument") {
  TempDir dir;
  auto j = open_ok(dir.path);
  CommitBatch b;
  b.instances.push_back(instance_write("a", 1, state_json("a", "running"), false, 1, 1, true));
  commit_ok(*j, b);
  for (std::string cursor : {"not-hex", "abc", "00ff", "", "0000000000000001zz"}) {
    ListFilter f;
    f.cursor = cursor;
    auto page = j->list(f);
    INFO("cursor " << cursor);
    REQUIRE_FALSE(page.has_value());
    CHECK(page.error().code == ErrorCode::invalid_argument);
    CHECK(page.error().message.find("cursor") != std::string::npos);
  }
  ListFilter zero;
  zero.limit = 0;
  auto page = j->list(zero);
  REQUIRE_FALSE(page.has_value());
  CHECK(page.error().code == ErrorCode::invalid_argument);
}

TEST_CASE("definitions round-trip and survive a reopen") {
  TempDir dir;
  {
    auto j = open_ok(dir.path);
    CommitBatch b;
    b.definitions.emplace_back("v1", "name: wf\nsteps: []\n");
    b.definitions.emplace_back("v2", "name: other\n");
    commit_ok(*j, b);
    CHECK(j->load_definition("v1")->value() == "name: wf\nsteps: []\n");
  }
  auto j = open_ok(dir.path);
  CHECK(j->load_definition("v1")->value() == "name: wf\nsteps: []\n");
  CHECK(j->load_definition("v2")->value() == "name: other\n");
  CHECK_FALSE(j->load_definition("v3")->has_value());
}

TEST_CASE("workflow files' last good versions are kept apart from the definitions") {
  TempDir dir;
  {
    auto j = open_ok(dir.path);
    CommitBatch b;
    b.definitions.emplace_back("0123456789abcdef", "name: wf\nsteps: []\n");
    b.file_versions.emplace_back("/etc/saga/workflows/wf.yaml", "0123456789abcdef");
    b.file_versions.emplace_back("/etc/saga/workflows/gone.yaml", "fedcba9876543210");
    commit_ok(*j, b);
    CommitBatch forget;
    forget.file_versions.emplace_back("/etc/saga/workflows/gone.yaml", std::nullopt);
    commit_ok(*j, forget);
  }
  auto j = open_ok(dir.path);
  auto versions = j->load_file_versions();
  REQUIRE(versions);
  CHECK(*versions ==
        std::map<std::string, std::string>{{"/etc/saga/workflows/wf.yaml", "0123456789abcdef"}});
  CHECK(j->load_definition("0123456789abcdef")->value() == "name: wf\nsteps: []\n");
}

TEST_CASE("schedule records commit with an instance, delete, and survive a reopen") {
  TempDir dir;
  {
    auto j = open_ok(dir.path);
    CommitBatch b;
    // A fire: the instance it starts and the schedule's new record in one atomic batch.
    b.instances.push_back(instance_write("wf@2026-11-23T03:00:00Z", 1,
                                         state_json("wf@2026-11-23T03:00:00Z", "running"), false, 1,
                                         1, true));
    b.schedules.emplace_back("schedule/wf/0", R"({"last_fire":"2026-11-23T03:00:00.000Z"})");
    b.schedules.emplace_back("paused/other", "{}");
    b.schedules.emplace_back("schedule/gone/0", "{}");
    commit_ok(*j, b);
    CommitBatch d;
    d.schedules.emplace_back("schedule/gone/0", std::nullopt);
    commit_ok(*j, d);
  }
  auto j = open_ok(dir.path);
  auto records = j->load_schedules();
  REQUIRE(records);
  CHECK(*records == std::vector<std::pair<std::string, std::string>>{
                        {"paused/other", "{}"},
                        {"schedule/wf/0", R"({"last_fire":"2026-11-23T03:00:00.000Z"})"}});
  CHECK(j->load_state("wf@2026-11-23T03:00:00Z")->has_value());
}

TEST_CASE("a format-1 journal from before schedules gets the column family on open") {
  TempDir dir;
  make_raw_db(
      dir.path,
      {"default", "instances", "history", "active", "by_created", "index", "definitions", "meta"},
      {{"meta", "format_version", "1"}, {"instances", "a", state_json("a", "running")}});
  auto j = open_ok(dir.path);
  CHECK(j->load_schedules()->empty());
  CHECK(j->load_state("a")->has_value());
  CHECK(raw_cf_names(dir.path).back() == "schedules");
}

TEST_CASE("a format-1 journal (one event per record) is read as it is and marked format 2") {
  TempDir dir;
  std::string a_key("a\0\0\0\0\0\0\0\0", 10);
  auto key = [&](char seq) {
    std::string k = a_key;
    k.back() = seq;
    return k;
  };
  make_raw_db(dir.path,
              {"default", "instances", "history", "active", "by_created", "index", "definitions",
               "meta", "schedules"},
              {{"meta", "format_version", "1"},
               {"instances", "a", state_json("a", "running")},
               {"active", "a", ""},
               {"history", key(1), event_json(1)},
               {"history", key(2), event_json(2)},
               {"history", key(3), event_json(3)}});
  {
    auto j = open_ok(dir.path);
    CHECK(*j->load_history("a") ==
          std::vector<std::string>{event_json(1), event_json(2), event_json(3)});
    CommitBatch b;
    b.instances.push_back(instance_write("a", 1, state_json("a", "running"), false, 4, 2, false));
    commit_ok(*j, b);
  }
  CHECK(raw_format_version(dir.path) == "2");
  auto j = open_ok(dir.path);
  std::vector<std::string> scanned;
  REQUIRE(j->scan_active_histories([&](const std::string&, std::vector<std::string>& events) {
             scanned = events;
           }).has_value());
  CHECK(scanned == std::vector<std::string>{event_json(1), event_json(2), event_json(3),
                                            event_json(4), event_json(5)});
}

TEST_CASE("remove deletes an instance with its history and index entries") {
  TempDir dir;
  {
    auto j = open_ok(dir.path);
    CommitBatch b;
    b.instances.push_back(instance_write("x", 5, state_json("x", "running"), false, 1, 3, true));
    // "x" is a prefix of "xy": removing x must leave xy's history alone.
    b.instances.push_back(instance_write("xy", 6, state_json("xy", "running"), false, 1, 2, true));
    commit_ok(*j, b);
    REQUIRE(j->remove("x", from_unix_ms(5)).has_value());
    CHECK(j->remove("never-existed", from_unix_ms(5)).has_value());
  }
  auto j = open_ok(dir.path);
  CHECK_FALSE(j->load_state("x")->has_value());
  CHECK(j->load_history("x")->empty());
  CHECK(j->load_history("xy")->size() == 2);
  CHECK(active_ids(*j) == std::vector<std::string>{"xy"});
  CHECK(all_pages(*j, ListFilter{}) == std::vector<std::vector<std::string>>{{"xy"}});

  // A new instance under the same id is listed once, at its own time: no stale index entry.
  CommitBatch again;
  again.instances.push_back(instance_write("x", 7, state_json("x", "running"), false, 1, 1, true));
  commit_ok(*j, again);
  CHECK(all_pages(*j, ListFilter{}) == std::vector<std::vector<std::string>>{{"x", "xy"}});
  CHECK(j->load_history("x")->size() == 1);
}

TEST_CASE(
    "expired finds completed and compensated instances that ended before "
    "the cutoff") {
  TempDir dir;
  auto j = open_ok(dir.path, Durability::async);
  auto old = std::string("2020-01-01T00:00:01.000Z");
  CommitBatch b;
  b.instances.push_back(instance_write(
      "old-done", 1000, state_json("old-done", "completed", "wf", old), true, 1, 1, true));
  b.instances.push_back(instance_write(
      "old-running", 1001, state_json("old-running", "running", "wf", old), false, 1, 1, true));
  b.instances.push_back(instance_write(
      "old-failed", 1002, state_json("old-failed", "failed", "wf", old), true, 1, 1, true));
  b.instances.push_back(instance_write(
      "old-comp", 1003, state_json("old-comp", "compensated", "wf", "2020-01-02T00:00:00.000Z"),
      true, 1, 1, true));
  b.instances.push_back(instance_write(
      "ended-late", 1004, state_json("ended-late", "completed", "wf", "2030-01-01T00:00:00.000Z"),
      true, 1, 1, true));
  b.instances.push_back(
      instance_write("undated", 1005, R"({"id":"undated","state":"completed"})", true, 1, 1, true));
  commit_ok(*j, b);

  auto cutoff = *parse_rfc3339("2021-01-01T00:00:00.000Z");
  auto expired = j->expired(cutoff, 10);
  REQUIRE(expired.has_value());
  // With the creation time that remove() needs.
  CHECK(*expired == std::vector<ExpiredInstance>{{"old-done", from_unix_ms(1000)},
                                                 {"old-comp", from_unix_ms(1003)}});
  CHECK(*j->expired(cutoff, 1) == std::vector<ExpiredInstance>{{"old-done", from_unix_ms(1000)}});
  CHECK(j->expired(cutoff, 0)->empty());

  // In bounded passes that go on where the last one stopped, and start over at the end.
  Journal::ExpiredScan scan;
  scan.max_examined = 2;
  std::vector<std::vector<std::string>> passes;
  for (int pass = 0; pass < 5; ++pass) {
    auto found = j->expired(cutoff, 10, &scan);
    REQUIRE(found.has_value());
    std::vector<std::string> ids;
    for (const auto& e : *found) ids.push_back(e.id);
    passes.push_back(ids);
    CHECK(scan.after.empty() == (pass == 2));  // six instances, two a pass, then over again
  }
  CHECK(passes == std::vector<std::vector<std::string>>{
                      {"old-done"}, {"old-comp"}, {}, {"old-done"}, {"old-comp"}});
  scan = {};
  scan.max_examined = 10;
  CHECK(j->expired(cutoff, 1, &scan)->size() == 1);
  CHECK(!scan.after.empty());  // stopped at the limit: more may follow
  CHECK(*j->expired(cutoff, 1, &scan) ==
        std::vector<ExpiredInstance>{{"old-comp", from_unix_ms(1003)}});

  REQUIRE(j->remove("old-done", from_unix_ms(1000)).has_value());
  CHECK(*j->expired(cutoff, 10) == std::vector<ExpiredInstance>{{"old-comp", from_unix_ms(1003)}});
  CHECK(all_pages(*j, ListFilter{}) ==
        std::vector<std::vector<std::string>>{
            {"undated", "ended-late", "old-comp", "old-failed", "old-running"}});
}

TEST_CASE("an unknown format version is refused, naming both, and left as it is") {
  TempDir dir;
  // A newer journal: its own column family, and none of ours beyond meta.
  make_raw_db(dir.path, {"default", "meta", "schedules_v7"}, {{"meta", "format_version", "7"}});
  auto j = open_rocksdb_journal(dir.path, Durability::sync);
  REQUIRE_FALSE(j.has_value());
  const auto& message = j.error().message;
  CHECK(message.find("format version 7") != std::string::npos);
  CHECK(message.find("format 2") != std::string::npos);
  CHECK(message.find(dir.path) != std::string::npos);
  CHECK(message.find('\n') == std::string::npos);
  CHECK(raw_cf_names(dir.path) == std::vector<std::string>{"default", "meta", "schedules_v7"});
  CHECK(raw_format_version(dir.path) == "7");
}

TEST_CASE("a RocksDB database that is not a journal is refused") {
  TempDir dir;
  make_raw_db(dir.path, {"default", "things"}, {{"things", "k", "v"}});
  auto j = open_rocksdb_journal(dir.path, Durability::sync);
  REQUIRE_FALSE(j.has_value());
  CHECK(j.error().message.find("not a saga journal") != std::string::npos);
  CHECK(j.error().message.find(dir.path) != std::string::npos);
  CHECK(raw_cf_names(dir.path) == std::vector<std::string>{"default", "things"});
}

TEST_CASE("a journal whose first start was interrupted is completed") {
  TempDir dir;
  make_raw_db(dir.path, {"default", "instances"}, {});
  {
    auto j = open_ok(dir.path);
    CommitBatch b;
    b.instances.push_back(instance_write("a", 1, state_json("a", "running"), false, 1, 1, true));
    commit_ok(*j, b);
  }
  CHECK(raw_format_version(dir.path) == "2");
  auto j = open_ok(dir.path);
  CHECK(j->load_state("a")->has_value());
}

TEST_CASE("a second open of the same directory in this process fails clearly") {
  TempDir dir;
  auto first = open_rocksdb_journal(dir.path, Durability::sync);
  REQUIRE(first.has_value());
  auto second = open_rocksdb_journal(dir.path, Durability::sync);
  REQUIRE_FALSE(second.has_value());
  CHECK(second.error().code == ErrorCode::unavailable);
  CHECK(second.error().message.find("state directory " + dir.path + " is in use") !=
        std::string::npos);
  CHECK(second.error().message.find('\n') == std::string::npos);
  first->reset();
  CHECK(open_rocksdb_journal(dir.path, Durability::sync).has_value());
}

TEST_CASE("a directory locked by another process is reported as in use") {
  TempDir dir;
  int locked[2];
  int release[2];
  REQUIRE(pipe(locked) == 0);
  REQUIRE(pipe(release) == 0);
  std::string lock_path = dir.path + "/LOCK";
  pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    // Holds the lock the way RocksDB does (fcntl on LOCK), using only async-signal-safe calls.
    int fd = open(lock_path.c_str(), O_RDWR | O_CREAT, 0644);
    struct flock f = {};
    f.l_type = F_WRLCK;
    f.l_whence = SEEK_SET;
    char ok = (fd >= 0 && fcntl(fd, F_SETLK, &f) == 0) ? '1' : '0';
    if (write(locked[1], &ok, 1) != 1) _exit(1);
    char done;
    if (read(release[0], &done, 1) < 0) _exit(1);
    _exit(0);
  }
  close(locked[1]);
  close(release[0]);
  char ok = 0;
  REQUIRE(read(locked[0], &ok, 1) == 1);
  REQUIRE(ok == '1');
  auto j = open_rocksdb_journal(dir.path, Durability::sync);
  char done = 'x';
  REQUIRE(write(release[1], &done, 1) == 1);
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  close(locked[0]);
  close(release[1]);
  REQUIRE_FALSE(j.has_value());
  CHECK(j.error().message.find("state directory " + dir.path + " is in use by another sagad") !=
        std::string::npos);
  CHECK(open_rocksdb_journal(dir.path, Durability::sync).has_value());
}

TEST_CASE(
    "a journal path that cannot be a directory gets a one-line error "
    "naming it") {
  TempDir dir;
  std::string path = dir.path + "/file";
  std::ofstream(path) << "not a directory";
  auto j = open_rocksdb_journal(path, Durability::sync);
  REQUIRE_FALSE(j.has_value());
  CHECK(j.error().message.find("cannot open the journal in " + path) != std::string::npos);
  CHECK(j.error().message.find("in use") == std::string::npos);
  CHECK(j.error().message.find('\n') == std::string::npos);
}

TEST_CASE("commits from a writer thread while another thread reads") {
  TempDir dir;
  auto j = open_ok(dir.path, Durability::async);
  constexpr int kInstances = 200;
  std::atomic<bool> writing{true};
  std::atomic<int> errors{0};
  std::atomic<int> torn{0};
  std::atomic<int> reads{0};

  std::thread writer([&] {
    for (int i = 0; i < kInstances; ++i) {
      std::string id = "w" + std::to_string(i);
      CommitBatch start;
      start.instances.push_back(
          instance_write(id, 1000 + i, state_json(id, "running"), false, 1, 3, true));
      CommitBatch end;
      end.instances.push_back(
          instance_write(id, 1000 + i, state_json(id, "completed"), true, 4, 2, false));
      if (!j->commit(start) || !j->commit(end)) ++errors;
    }
    // On a busy machine the reader thread may not have run yet: the test is about overlap.
    while (reads == 0) std::this_thread::yield();
    writing = false;
  });
  std::thread reader([&] {
    while (writing) {
      ListFilter f;
      f.limit = 20;
      auto page = j->list(f);
      if (!page) {
        ++errors;
        continue;
      }
      // A state is written with its events in one batch: seeing it means seeing them.
      for (const auto& s : page->states) {
        auto history = j->load_history(id_of(s));
        bool done = s.find("completed") != std::string::npos;
        if (!history || history->size() < (done ? 5u : 3u)) ++torn;
      }
      if (!j->scan_active_histories([](const std::string&, std::vector<std::string>&) {})) {
        ++errors;
      }
      ++reads;
    }
  });
  writer.join();
  reader.join();
  CHECK(errors == 0);
  CHECK(torn == 0);
  CHECK(reads > 0);
  CHECK(active_ids(*j).empty());
  ListFilter all;
  all.limit = 1000;
  CHECK(j->list(all)->states.size() == kInstances);
}

TEST_CASE("a commit is refused, naming the reserve, when the disk has less room than it") {
  TempDir dir;
  auto opened = open_rocksdb_journal(dir.path, Durability::sync, uint64_t{1} << 62);
  REQUIRE(opened.has_value());
  CommitBatch b;
  b.instances.push_back(instance_write("r", 1, state_json("r", "running"), false, 1, 1, true));
  auto r = (*opened)->commit(b);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == ErrorCode::unavailable);
  CHECK(r.error().message.find("kept in reserve") != std::string::npos);
  CHECK((*opened)->load_state("r")->has_value() == false);
}

TEST_CASE("recovery's scan steps over the histories of terminal instances between active ones") {
  TempDir dir;
  auto j = open_ok(dir.path);
  CommitBatch b;
  // Terminal histories first, between active ones and last; one active instance has none.
  const std::vector<std::pair<std::string, bool>> instances = {
      {"c0", true},  {"c1", false}, {"c2", true}, {"c3", true},
      {"c4", false}, {"c5", false}, {"c6", true}};
  int64_t created = 1;
  for (const auto& [id, terminal] : instances) {
    const char* state = terminal ? "completed" : "running";
    b.instances.push_back(
        instance_write(id, created, state_json(id, state), terminal, 1, int(created), true));
    ++created;
  }
  InstanceWrite bare = instance_write("c45", 99, state_json("c45", "running"), false, 1, 0, true);
  b.instances.push_back(bare);
  commit_ok(*j, b);

  std::vector<std::pair<std::string, size_t>> seen;
  REQUIRE(j->scan_active_histories([&](const std::string& id, std::vector<std::string>& events) {
             for (size_t i = 0; i < events.size(); ++i) CHECK(events[i] == event_json(i + 1));
             seen.emplace_back(id, events.size());
           }).has_value());
  CHECK(seen ==
        std::vector<std::pair<std::string, size_t>>{{"c1", 2}, {"c4", 5}, {"c45", 0}, {"c5", 6}});
}

namespace {

// The journal's write-ahead log files, "<number>.log", with their sizes.
std::vector<std::pair<fs::path, uintmax_t>> wal_files(const std::string& dir) {
  std::vector<std::pair<fs::path, uintmax_t>> files;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (name.ends_with(".log") && name != "LOG")
      files.emplace_back(entry.path(), entry.file_size());
  }
  return files;
}

bool ends_in_zeros(const fs::path& file, uintmax_t size, size_t bytes) {
  std::ifstream in(file, std::ios::binary);
  in.seekg(static_cast<std::streamoff>(size - bytes));
  std::string tail(bytes, '\x01');
  in.read(tail.data(), static_cast<std::streamsize>(bytes));
  return in.gcount() == static_cast<std::streamsize>(bytes) &&
         std::all_of(tail.begin(), tail.end(), [](char c) { return c == '\0'; });
}

// 300 running instances with a 6 KiB state each: about 2 MiB of WAL, more than one zeroed chunk,
// and well under one memtable, so that nothing is flushed while the test copies the directory.
std::string big_state(int i) {
  std::string id = "i" + std::to_string(i);
  return state_json(id, "running", "wf", std::string(6 << 10, 'x'));
}

void commit_big_instances(Journal& j) {
  for (int first = 0; first < 300; first += 10) {
    CommitBatch b;
    for (int i = first; i < first + 10; ++i) {
      b.instances.push_back(
          instance_write("i" + std::to_string(i), 1000 + i, big_state(i), false, 1, 2, true));
    }
    commit_ok(j, b);
  }
}

}  // namespace

TEST_CASE(
    "a synced journal's WAL is zero-filled ahead, and a crash image with the zeros recovers") {
  TempDir dir;
  const std::string live = dir.path + "/live", image = dir.path + "/image";
  {
    auto j = open_ok(live, Durability::sync);
    commit_big_instances(*j);
    // The records overwrite zeros written a chunk at a time ahead of them.
    auto wals = wal_files(live);
    REQUIRE(wals.size() == 1);
    const auto& [wal, size] = wals.front();
    CHECK(size >= 2 * kWalZeroChunk);
    CHECK(size % kWalZeroChunk == 0);
    CHECK(ends_in_zeros(wal, size, 4096));
    // What a crash would leave: the files as they are while the journal is open.
    fs::copy(live, image, fs::copy_options::recursive);
    fs::remove(fs::path(image) / "LOCK");
  }
  // A clean close cuts each WAL back to its records.
  for (const auto& [wal, size] : wal_files(live)) {
    INFO(wal);
    CHECK(size % kWalZeroChunk != 0);
  }

  auto j = open_ok(image);
  std::vector<std::string> expected;
  for (int i = 0; i < 300; ++i) {
    std::string id = "i" + std::to_string(i);
    auto state = j->load_state(id);
    REQUIRE(state.has_value());
    REQUIRE(state->has_value());
    CHECK(**state == big_state(i));
    CHECK(j->load_history(id)->size() == 2);
    expected.push_back(id);
  }
  std::sort(expected.begin(), expected.end());
  CHECK(active_ids(*j) == expected);
  // The recovered journal takes commits again, into a WAL of its own.
  CommitBatch b;
  b.instances.push_back(
      instance_write("after", 5000, state_json("after", "running"), false, 1, 1, true));
  commit_ok(*j, b);
  CHECK(j->load_state("after")->value() == state_json("after", "running"));
}

TEST_CASE("an async journal's WAL is only its records: it is never synced, so nothing is gained") {
  TempDir dir;
  auto j = open_ok(dir.path, Durability::async);
  commit_big_instances(*j);
  auto wals = wal_files(dir.path);
  REQUIRE(wals.size() == 1);
  CHECK(wals.front().second % kWalZeroChunk != 0);
  CHECK_FALSE(ends_in_zeros(wals.front().first, wals.front().second, 4096));
}

TEST_CASE("an id removed and written again in one memtable reads only its new history") {
  TempDir dir;
  auto j = open_ok(dir.path);
  for (int round = 0; round < 3; ++round) {
    CommitBatch b;
    b.instances.push_back(instance_write("x", 1000 + round, state_json("x", "running"), false,
                                         static_cast<uint64_t>(10 * round + 1), 2, true));
    commit_ok(*j, b);
    CommitBatch c;
    c.instances.push_back(instance_write("x", 1000 + round, state_json("x", "completed"), true,
                                         static_cast<uint64_t>(10 * round + 3), 1, false));
    commit_ok(*j, c);
    auto seq = static_cast<uint64_t>(10 * round);
    CHECK(*j->load_history("x") ==
          std::vector<std::string>{event_json(seq + 1), event_json(seq + 2), event_json(seq + 3)});
    REQUIRE(j->remove("x", from_unix_ms(1000 + round)).has_value());
    CHECK(j->load_history("x")->empty());
    CHECK_FALSE(j->load_state("x")->has_value());
  }
}

TEST_CASE("ids written in no particular order, interleaved and removed, read back in key order") {
  // The memtables start each insert where the last one went (sagad's ids are time-ordered);
  // ids a client chose land anywhere, before and after it.
  TempDir dir;
  std::vector<std::string> ids;
  for (int i = 0; i < 300; ++i) ids.push_back(std::to_string((i * 7919) % 1000));
  {
    auto j = open_ok(dir.path);
    for (size_t at = 0; at < ids.size(); at += 30) {
      CommitBatch b;
      for (size_t i = at; i < at + 30; ++i) {
        b.instances.push_back(instance_write(ids[i], static_cast<int64_t>(1000 - i),
                                             state_json(ids[i], "running"), false, 1, 1, true));
      }
      commit_ok(*j, b);
    }
    for (int seq = 2; seq <= 3; ++seq) {
      CommitBatch b;
      for (auto it = ids.rbegin(); it != ids.rend(); ++it) {
        b.instances.push_back(
            instance_write(*it, 0, "", false, static_cast<uint64_t>(seq), 1, false));
      }
      commit_ok(*j, b);
    }
    for (size_t i = 0; i < ids.size(); i += 3) {
      REQUIRE(j->remove(ids[i], from_unix_ms(static_cast<int64_t>(1000 - i))).has_value());
    }
  }
  std::vector<std::string> kept;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i % 3 != 0) kept.push_back(ids[i]);
  }
  auto j = open_ok(dir.path);
  std::vector<std::string> scanned;
  REQUIRE(j->scan_active_histories([&](const std::string& id, std::vector<std::string>& events) {
             CHECK(events == std::vector<std::string>{event_json(1), event_json(2), event_json(3)});
             scanned.push_back(id);
           }).has_value());
  std::vector<std::string> sorted = kept;
  std::sort(sorted.begin(), sorted.end());
  CHECK(scanned == sorted);
  // Newest first: created at 1000 - i, so in the order they were written.
  ListFilter all;
  all.limit = 1000;
  CHECK(ids_of(*j->list(all)) == kept);
}

TEST_CASE("a journal whose CURRENT or MANIFEST is damaged is refused, never started over") {
  namespace fs = std::filesystem;
  TempDir dir;
  {
    auto j = open_ok(dir.path);
    CommitBatch b;
    b.instances.push_back(
        instance_write("kept", 1, state_json("kept", "running"), false, 1, 1, true));
    commit_ok(*j, b);
  }
  {
    // Into tables, as a journal that has run a while has its records.
    std::vector<std::string> names;
    REQUIRE(rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), dir.path, &names).ok());
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
    for (const auto& n : names) cfs.emplace_back(n, rocksdb::ColumnFamilyOptions());
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* db = nullptr;
    REQUIRE(rocksdb::DB::Open(rocksdb::DBOptions(), dir.path, cfs, &handles, &db).ok());
    REQUIRE(db->Flush(rocksdb::FlushOptions(), handles).ok());
    for (auto* h : handles) REQUIRE(db->DestroyColumnFamilyHandle(h).ok());
    REQUIRE(db->Close().ok());
    delete db;
  }
  const std::string backup = dir.path + ".backup";
  fs::copy(dir.path, backup, fs::copy_options::recursive);
  auto damage_and_open = [&](const std::function<void()>& damage) {
    damage();
    for (int attempt = 0; attempt < 2; ++attempt) {  // as a service manager restarts it
      auto j = open_rocksdb_journal(dir.path, Durability::sync);
      REQUIRE_FALSE(j.has_value());
      INFO(j.error().message);
      CHECK(j.error().message.find("journal in " + dir.path) != std::string::npos);
    }
    // Nothing was deleted: the backup's files are all still there.
    for (const auto& e : fs::directory_iterator(backup)) {
      const std::string name = e.path().filename().string();
      if (name.ends_with(".sst") || name.ends_with(".log"))
        CHECK(fs::exists(dir.path + "/" + name));
    }
    fs::remove_all(dir.path);
    fs::copy(backup, dir.path, fs::copy_options::recursive);
    auto j = open_ok(dir.path);
    auto state = j->load_state("kept");
    REQUIRE(state.has_value());
    CHECK(state->has_value());
  };
  SECTION("CURRENT removed") {
    damage_and_open([&] { fs::remove(dir.path + "/CURRENT"); });
  }
  SECTION("a MANIFEST that reads as an empty database") {
    damage_and_open([&] {
      TempDir other;
      rocksdb::Options create;
      create.create_if_missing = true;
      rocksdb::DB* db = nullptr;
      REQUIRE(rocksdb::DB::Open(create, other.path, &db).ok());
      delete db;
      for (const auto& e : fs::directory_iterator(other.path)) {
        if (!e.path().filename().string().starts_with("MANIFEST-")) continue;
        fs::copy_file(e.path(), dir.path + "/MANIFEST-009999");
      }
      std::ofstream(dir.path + "/CURRENT", std::ios::trunc) << "MANIFEST-009999\n";
    });
  }
  SECTION("MANIFEST truncated") {
    damage_and_open([&] {
      for (const auto& e : fs::directory_iterator(dir.path)) {
        if (e.path().filename().string().starts_with("MANIFEST-")) fs::resize_file(e.path(), 100);
      }
    });
  }
  fs::remove_all(backup);
}
