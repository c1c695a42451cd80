#include "journal/journal_writer.hpp"

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

using namespace saga;

namespace {

// A journal whose commits take a while and can be made to fail.
class SlowJournal : public Journal {
 public:
  Result<void> commit(const CommitBatch& batch) override {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    std::lock_guard lock(mu);
    if (fail) return make_error(ErrorCode::unavailable, "disk full");
    batches.push_back(batch.instances.size());
    for (const auto& w : batch.instances) ids.push_back(w.id);
    definitions += batch.definitions.size();
    for (const auto& [key, record] : batch.schedules) {
      schedules.push_back(key + "=" + record.value_or("<deleted>"));
    }
    return {};
  }
  Result<std::optional<std::string>> load_state(const std::string&) override {
    return std::nullopt;
  }
  Result<std::vector<std::string>> load_history(const std::string&) override {
    return std::vector<std::string>{};
  }
  Result<void> scan_active_histories(
      const std::function<void(const std::string&, std::vector<std::string>&)>&) override {
    return {};
  }
  Result<ListPage> list(const ListFilter&) override { return ListPage{}; }
  Result<std::optional<std::string>> load_definition(const std::string&) override {
    return std::nullopt;
  }
  Result<std::vector<ExpiredInstance>> expired(TimePoint, size_t, ExpiredScan*) override {
    return std::vector<ExpiredInstance>{};
  }
  Result<void> remove(const std::string&, TimePoint) override { return {}; }
  Result<std::vector<std::pair<std::string, std::string>>> load_schedules() override {
    return std::vector<std::pair<std::string, std::string>>{};
  }
  Result<std::map<std::string, std::string>> load_file_versions() override {
    return std::map<std::string, std::string>{};
  }

  std::mutex mu;
  bool fail = false;
  std::vector<size_t> batches;
  std::vector<std::string> ids;
  size_t definitions = 0;
  std::vector<std::string> schedules;
};

InstanceWrite write(std::string id) {
  InstanceWrite w;
  w.id = std::move(id);
  w.events.emplace_back(1, "{}");
  w.state = "{}";
  return w;
}

// Submits through a writer on `journal`, then stops it; the callbacks run one commit at a time,
// as on the daemon's loop.
void run_writer(SlowJournal& journal, const std::function<void(JournalWriter&)>& submit) {
  std::mutex mu;
  JournalWriter writer(journal, [&](Durable done, std::optional<Error>) {
    std::lock_guard lock(mu);
    done.run();
  });
  submit(writer);
  writer.stop();
}

}  // namespace

TEST_CASE("writes that arrive during a commit go into the next one, in order") {
  SlowJournal journal;
  std::mutex mu;
  std::vector<int> durable;
  std::vector<std::string> written;  // what each callback got back, as id:state:event
  std::optional<Error> failure;
  {
    JournalWriter writer(journal, [&](Durable done, std::optional<Error> e) {
      std::lock_guard lock(mu);
      done.run();
      if (e) failure = e;
    });
    for (int i = 0; i < 200; ++i) {
      writer.submit(write("i" + std::to_string(i)), [&durable, &written, i](InstanceWrite& w) {
        durable.push_back(i);
        written.push_back(w.id + ":" + w.state + ":" + w.events.at(0).second);
      });
    }
    writer.submit_definition("v1", "name: x");
    writer.stop();
    auto stats = writer.stats();
    CHECK(stats.writes == 200);
    // 200 writes at 5 ms per commit would take a second one by one; grouped, few commits.
    CHECK(stats.commits < 50);
  }
  CHECK_FALSE(failure);
  REQUIRE(durable.size() == 200);
  for (int i = 0; i < 200; ++i) CHECK(durable[i] == i);
  // Each callback gets its own write back, as it was submitted.
  REQUIRE(written.size() == 200);
  CHECK(written.front() == "i0:{}:{}");
  CHECK(written.back() == "i199:{}:{}");
  CHECK(journal.ids.front() == "i0");
  CHECK(journal.ids.back() == "i199");
  CHECK(journal.definitions == 1);
}

TEST_CASE("a failed commit delivers the error and never the callbacks") {
  SlowJournal journal;
  journal.fail = true;
  std::atomic<int> called{0};
  std::optional<Error> failure;
  std::mutex mu;
  JournalWriter writer(journal, [&](Durable done, std::optional<Error> e) {
    std::lock_guard lock(mu);
    done.run();
    if (e) failure = e;
  });
  writer.submit(write("a"), [&](InstanceWrite&) { ++called; });
  writer.stop();
  writer.submit(write("b"), [&](InstanceWrite&) { ++called; });
  CHECK(called == 0);
  REQUIRE(failure);
  CHECK(failure->message == "disk full");
}

TEST_CASE("schedule records commit in submission order after the instance before them") {
  SlowJournal journal;
  std::vector<std::string> durable;
  run_writer(journal, [&](JournalWriter& writer) {
    writer.submit(write("wf@2026-11-23T03:00:00Z"),
                  [&](InstanceWrite&) { durable.push_back("instance"); });
    writer.submit_schedule("schedule/wf/0", std::string("{}"), nullptr);
    writer.submit_schedule("paused/wf", std::nullopt, [&] { durable.push_back("unpaused"); });
  });
  CHECK(durable == std::vector<std::string>{"instance", "unpaused"});
  CHECK(journal.ids == std::vector<std::string>{"wf@2026-11-23T03:00:00Z"});
  CHECK(journal.schedules == std::vector<std::string>{"schedule/wf/0={}", "paused/wf=<deleted>"});
}

TEST_CASE("a write without a callback still counts, so each later callback gets its own write") {
  SlowJournal journal;
  std::vector<std::string> durable;
  run_writer(journal, [&](JournalWriter& writer) {
    writer.submit(write("a"), nullptr);
    writer.submit_schedule("schedule/wf/0", std::string("{}"), [&] { durable.push_back("fired"); });
    writer.submit(write("b"), nullptr);
    writer.submit(write("c"), [&](InstanceWrite& w) { durable.push_back(w.id); });
  });
  CHECK(durable == std::vector<std::string>{"fired", "c"});
  CHECK(journal.ids == std::vector<std::string>{"a", "b", "c"});
}
