#include <rocksdb/db.h>
#include <stdlib.h>

#include <catch2/catch.hpp>
#include <filesystem>

#include "journal/journal.hpp"

using namespace saga;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/saga-journal-XXXXXX";
    path = mkdtemp(tmpl);
  }
  ~TempDir() { fs::remove_all(path); }
};

InstanceWrite write(const std::string& id, int64_t created_ms, std::string state, bool terminal,
                    uint64_t first_seq, int events, bool created) {
  InstanceWrite w;
  w.id = id;
  w.workflow = "wf";
  w.created_at = from_unix_ms(created_ms);
  w.created = created;
  for (int i = 0; i < events; ++i) {
    w.events.emplace_back(first_seq + i, "{\"seq\":" + std::to_string(first_seq + i) + "}");
  }
  w.state = std::move(state);
  w.terminal = terminal;
  return w;
}

std::string state(const std::string& s, const std::string& wf = "wf") {
  return "{\"state\":\"" + s + "\",\"workflow\":\"" + wf + "\"}";
}

}  // namespace

TEST_CASE("committed state and history survive a reopen; active tracks non-terminal") {
  TempDir dir;
  {
    auto j = open_rocksdb_journal(dir.path, Durability::sync);
    REQUIRE(j.has_value());
    CommitBatch b;
    b.instances.push_back(write("a", 1000, state("running"), false, 1, 2, true));
    b.instances.push_back(write("b", 2000, state("running"), false, 1, 1, true));
    b.definitions.emplace_back("v1", "name: wf");
    REQUIRE((*j)->commit(b).has_value());
    CommitBatch c;
    c.instances.push_back(write("b", 2000, state("completed"), true, 2, 12, false));
    REQUIRE((*j)->commit(c).has_value());
  }
  auto j = open_rocksdb_journal(dir.path, Durability::sync);
  REQUIRE(j.has_value());
  auto history = (*j)->load_history("b");
  REQUIRE(history.has_value());
  REQUIRE(history->size() == 13);
  for (size_t i = 0; i < history->size(); ++i) {
    CHECK((*history)[i] == "{\"seq\":" + std::to_string(i + 1) + "}");  // numeric, not text order
  }
  CHECK(**(*j)->load_state("b") == state("completed"));
  CHECK_FALSE((*(*j)->load_state("zzz")).has_value());
  std::vector<std::string> active;
  REQUIRE(
      (*j)->scan_active([&](const std::string& id, const std::string&) { active.push_back(id); })
          .has_value());
  CHECK(active == std::vector<std::string>{"a"});
  CHECK(**(*j)->load_definition("v1") == "name: wf");
}

TEST_CASE("list pages newest first and filters") {
  TempDir dir;
  auto j = open_rocksdb_journal(dir.path, Durability::async);
  REQUIRE(j.has_value());
  CommitBatch b;
  for (int i = 0; i < 7; ++i) {
    b.instances.push_back(write("i" + std::to_string(i), 1000 + i,
                                state(i % 2 ? "failed" : "completed", i < 5 ? "wf" : "other"), true,
                                1, 1, true));
  }
  REQUIRE((*j)->commit(b).has_value());
  ListFilter f;
  f.limit = 3;
  std::vector<size_t> sizes;
  std::optional<std::string> cursor;
  int pages = 0;
  do {
    f.cursor = cursor;
    auto page = (*j)->list(f);
    REQUIRE(page.has_value());
    sizes.push_back(page->states.size());
    cursor = page->next_cursor;
    ++pages;
  } while (cursor && pages < 10);
  CHECK(sizes == std::vector<size_t>{3, 3, 1});
  f = ListFilter{};
  auto all = (*j)->list(f);
  REQUIRE(all->states.size() == 7);
  CHECK_FALSE(all->next_cursor);
  f.state = "failed";
  CHECK((*j)->list(f)->states.size() == 3);
  f.workflow = "other";
  CHECK((*j)->list(f)->states.size() == 1);
  f = ListFilter{};
  f.cursor = "not-hex";
  auto bad = (*j)->list(f);
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error().code == ErrorCode::invalid_argument);
}

TEST_CASE("remove deletes an instance with its history and index") {
  TempDir dir;
  auto j = open_rocksdb_journal(dir.path, Durability::sync);
  CommitBatch b;
  b.instances.push_back(write("x", 5, state("completed"), true, 1, 3, true));
  b.instances.push_back(write("xy", 6, state("completed"), true, 1, 2, true));
  REQUIRE((*j)->commit(b).has_value());
  REQUIRE((*j)->remove("x").has_value());
  CHECK_FALSE((*(*j)->load_state("x")).has_value());
  CHECK((*j)->load_history("x")->empty());
  CHECK((*j)->load_history("xy")->size() == 2);
  CHECK((*j)->list(ListFilter{})->states.size() == 1);
}

TEST_CASE("an unknown format version is refused, naming both") {
  TempDir dir;
  { REQUIRE(open_rocksdb_journal(dir.path, Durability::sync).has_value()); }
  {
    rocksdb::DBOptions options;
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
    std::vector<std::string> names;
    REQUIRE(rocksdb::DB::ListColumnFamilies(options, dir.path, &names).ok());
    for (const auto& n : names) cfs.emplace_back(n, rocksdb::ColumnFamilyOptions());
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* db = nullptr;
    REQUIRE(rocksdb::DB::Open(options, dir.path, cfs, &handles, &db).ok());
    for (size_t i = 0; i < names.size(); ++i) {
      if (names[i] == "meta") {
        REQUIRE(db->Put(rocksdb::WriteOptions(), handles[i], "format_version", "7").ok());
      }
    }
    for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
    delete db;
  }
  auto j = open_rocksdb_journal(dir.path, Durability::sync);
  REQUIRE_FALSE(j.has_value());
  CHECK(j.error().message.find("format version 7") != std::string::npos);
  CHECK(j.error().message.find("format 1") != std::string::npos);
}

TEST_CASE("a second open of the same directory fails clearly") {
  TempDir dir;
  auto first = open_rocksdb_journal(dir.path, Durability::sync);
  REQUIRE(first.has_value());
  auto second = open_rocksdb_journal(dir.path, Durability::sync);
  REQUIRE_FALSE(second.has_value());
  CHECK(second.error().message.find(dir.path) != std::string::npos);
  CHECK(second.error().message.find("in use") != std::string::npos);
}

TEST_CASE("expired lists terminal instances that ended before the cutoff, oldest first") {
  TempDir dir;
  auto j = open_rocksdb_journal(dir.path, Durability::async);
  REQUIRE(j.has_value());
  auto with_time = [](const std::string& s, const std::string& updated) {
    return "{\"state\":\"" + s + "\",\"updated_at\":\"" + updated + "\"}";
  };
  CommitBatch b;
  b.instances.push_back(write("old-done", 1000, with_time("completed", "2020-01-01T00:00:01.000Z"),
                              true, 1, 1, true));
  b.instances.push_back(write("old-running", 1001, with_time("running", "2020-01-01T00:00:01.000Z"),
                              false, 1, 1, true));
  b.instances.push_back(write(
      "old-comp", 1002, with_time("compensated", "2020-01-02T00:00:00.000Z"), true, 1, 1, true));
  b.instances.push_back(
      write("recent", 1003, with_time("completed", "2030-01-01T00:00:00.000Z"), true, 1, 1, true));
  REQUIRE((*j)->commit(b).has_value());
  auto cutoff = *parse_rfc3339("2021-01-01T00:00:00.000Z");
  auto ids = (*j)->expired(cutoff, 10);
  REQUIRE(ids.has_value());
  CHECK(*ids == std::vector<std::string>{"old-done", "old-comp"});
  CHECK((*j)->expired(cutoff, 1)->size() == 1);
}
