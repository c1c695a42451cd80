#include "executor/executor.hpp"

#include <pthread.h>

namespace saga {

Executor::Executor(LoopQueue& results, size_t workers) : results_(results) {
  for (size_t i = 0; i < workers; ++i) threads_.emplace_back([this] { work(); });
}

Executor::~Executor() {
  stop();
}

void Executor::submit(Job job) {
  {
    std::lock_guard lock(mu_);
    queue_.push_back(std::move(job));
  }
  cv_.notify_one();
}

size_t Executor::busy() const {
  std::lock_guard lock(mu_);
  return queue_.size() + running_;
}

void Executor::work() {
  pthread_setname_np(pthread_self(), "saga-worker");
  for (;;) {
    Job job;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      job = std::move(queue_.front());
      queue_.pop_front();
      ++running_;
    }
    auto done = job();
    {
      std::lock_guard lock(mu_);
      --running_;
    }
    if (done) results_.post(std::move(done));
  }
}

void Executor::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    queue_.clear();
  }
  cv_.notify_all();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
}

void Executor::detach() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    queue_.clear();
  }
  cv_.notify_all();
  for (auto& t : threads_) {
    if (t.joinable()) t.detach();
  }
  threads_.clear();
}

}  // namespace saga
