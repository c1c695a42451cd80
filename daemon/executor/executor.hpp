// The worker pool that runs step attempts off the loop thread.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "executor/loop_queue.hpp"

namespace saga {

class Executor {
 public:
  // A job runs on a worker and returns what then runs on the loop thread.
  using Job = std::function<std::function<void()>()>;

  Executor(LoopQueue& results, size_t workers);
  ~Executor();  // stops and joins the workers (see stop())
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // Loop thread.
  void submit(Job job);
  // Jobs queued or running; loop thread.
  size_t busy() const;
  // Drops queued jobs and joins the workers once their current job returns.
  void stop();
  // Lets the process exit while workers are stuck in a job: they are not joined.
  void detach();

 private:
  void work();

  LoopQueue& results_;
  std::vector<std::thread> threads_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> queue_;  // guarded by mu_
  size_t running_ = 0;     // guarded by mu_
  bool stopping_ = false;  // guarded by mu_
};

}  // namespace saga
