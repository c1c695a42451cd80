// The worker pool that runs step attempts off the loop thread.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "executor/loop_queue.hpp"

namespace saga {

class Executor {
 public:
  // A job runs on a worker and returns what then runs on the loop thread.
  using Job = std::function<std::function<void()>()>;
  // Names a submitted job, for abandon().
  using Ticket = uint64_t;

  Executor(LoopQueue& results, size_t workers);
  ~Executor();  // stops and joins the workers (see stop())
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // Loop thread.
  Ticket submit(Job job);
  // Gives up on a job (a step that ignores being told to stop). One still queued is dropped. One
  // running goes on, and what it returns still reaches the loop, but another worker takes its
  // place, so that such jobs cannot use up the pool; its own worker leaves once it returns. At
  // most kMaxReplaced workers are replaced at a time. Loop thread.
  enum class Abandoned { dropped, replaced, done, too_many };
  Abandoned abandon(Ticket ticket);
  // Drops a job that no worker has taken up yet: true when it was queued. Loop thread.
  bool drop_queued(Ticket ticket);
  // Jobs queued or running, abandoned ones included; loop thread.
  size_t busy() const;
  // Running jobs that were abandoned; loop thread.
  size_t abandoned() const;
  // Drops queued jobs and joins the workers once their current job returns.
  void stop();
  // Lets the process exit while workers are stuck in a job: they are not joined.
  void detach();

  static constexpr size_t kMaxReplaced = 256;

 private:
  void work();
  void reap();  // joins the workers that left

  LoopQueue& results_;
  std::vector<std::thread> threads_;  // loop thread
  mutable std::mutex mu_;
  std::condition_variable cv_;
  Ticket next_ticket_ = 1;                    // loop thread
  std::deque<std::pair<Ticket, Job>> queue_;  // guarded by mu_
  std::vector<Ticket> running_;               // guarded by mu_
  std::vector<Ticket> abandoned_;             // running and abandoned; guarded by mu_
  std::vector<std::thread::id> left_;         // workers that left, to join; guarded by mu_
  bool stopping_ = false;                     // guarded by mu_
};

}  // namespace saga
