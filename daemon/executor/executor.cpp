#include "executor/executor.hpp"

#include <pthread.h>
#include <signal.h>

#include <algorithm>

namespace saga {

Executor::Executor(LoopQueue& results, size_t workers) : results_(results) {
  for (size_t i = 0; i < workers; ++i) threads_.emplace_back([this] { work(); });
}

Executor::~Executor() {
  stop();
}

Executor::Ticket Executor::submit(Job job) {
  reap();
  const Ticket ticket = next_ticket_++;
  {
    std::lock_guard lock(mu_);
    queue_.emplace_back(ticket, std::move(job));
  }
  cv_.notify_one();
  return ticket;
}

bool Executor::drop_queued(Ticket ticket) {
  std::lock_guard lock(mu_);
  auto queued =
      std::find_if(queue_.begin(), queue_.end(), [&](const auto& q) { return q.first == ticket; });
  if (queued == queue_.end()) return false;
  queue_.erase(queued);
  return true;
}

Executor::Abandoned Executor::abandon(Ticket ticket) {
  reap();
  if (drop_queued(ticket)) return Abandoned::dropped;
  std::lock_guard lock(mu_);
  if (std::find(running_.begin(), running_.end(), ticket) == running_.end() ||
      std::find(abandoned_.begin(), abandoned_.end(), ticket) != abandoned_.end()) {
    return Abandoned::done;
  }
  if (stopping_ || abandoned_.size() >= kMaxReplaced) return Abandoned::too_many;
  abandoned_.push_back(ticket);
  threads_.emplace_back([this] { work(); });
  return Abandoned::replaced;
}

size_t Executor::busy() const {
  std::lock_guard lock(mu_);
  return queue_.size() + running_.size();
}

size_t Executor::abandoned() const {
  std::lock_guard lock(mu_);
  return abandoned_.size();
}

void Executor::reap() {
  std::vector<std::thread::id> left;
  {
    std::lock_guard lock(mu_);
    if (left_.empty()) return;
    left.swap(left_);
  }
  std::erase_if(threads_, [&](std::thread& t) {
    if (std::find(left.begin(), left.end(), t.get_id()) == left.end()) return false;
    t.join();  // it has left work(), or is about to
    return true;
  });
}

void Executor::work() {
  pthread_setname_np(pthread_self(), "saga-worker");
  // The loop thread takes sagad's signals: a worker started after it unblocked them (to replace
  // an abandoned one) must not, and a step's poll() must not see EINTR for a SIGHUP.
  sigset_t handled;
  sigemptyset(&handled);
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&handled, sig);
  pthread_sigmask(SIG_BLOCK, &handled, nullptr);
  for (;;) {
    Ticket ticket = 0;
    Job job;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      ticket = queue_.front().first;
      job = std::move(queue_.front().second);
      queue_.pop_front();
      running_.push_back(ticket);
    }
    auto done = job();
    bool leave = false;
    {
      std::lock_guard lock(mu_);
      std::erase(running_, ticket);
      // Another worker took this one's place when its job was abandoned: the pool is back to
      // its size once this one leaves.
      if (auto it = std::find(abandoned_.begin(), abandoned_.end(), ticket);
          it != abandoned_.end()) {
        abandoned_.erase(it);
        left_.push_back(std::this_thread::get_id());
        leave = true;
      }
    }
    if (done) results_.post(std::move(done));
    if (leave) return;
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
