#include "systemd_notifier.hpp"

#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>

#include <algorithm>
#include <cstring>

namespace saga {
namespace {

// STATUS= is refreshed this often (when it changed) if no watchdog asks for more.
constexpr std::chrono::milliseconds kStatusInterval{1000};

}  // namespace

SystemdNotifier::SystemdNotifier(uv_loop_t* loop, std::function<std::string()> status)
    : status_(std::move(status)) {
  uint64_t usec = 0;
  // Keeps WATCHDOG_USEC in the environment: exec steps' children do not match WATCHDOG_PID.
  if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
    watchdog_ = std::chrono::microseconds(usec / 2);
  }
  timer_ = new uv_timer_t;
  uv_timer_init(loop, timer_);
  timer_->data = this;
}

SystemdNotifier::~SystemdNotifier() {
  close();
}

void SystemdNotifier::send(const std::string& message) {
  int r = sd_notify(0, message.c_str());
  if (r < 0) spdlog::debug("sd_notify: {}", std::strerror(-r));
}

void SystemdNotifier::ready() {
  last_status_ = status_();
  send("READY=1\nSTATUS=" + last_status_);
  last_ping_ = std::chrono::steady_clock::now();
  if (watchdog_.count() > 0) send("WATCHDOG=1");
  auto interval = std::chrono::duration_cast<std::chrono::milliseconds>(kStatusInterval);
  if (watchdog_.count() > 0) {
    interval = std::min(interval,
                        std::max(std::chrono::duration_cast<std::chrono::milliseconds>(watchdog_),
                                 std::chrono::milliseconds(1)));
  }
  auto ms = static_cast<uint64_t>(interval.count());
  uv_timer_start(
      timer_, [](uv_timer_t* t) { static_cast<SystemdNotifier*>(t->data)->tick(); }, ms, ms);
}

void SystemdNotifier::stopping() {
  last_status_ = status_();
  send("STOPPING=1\nSTATUS=" + last_status_);
}

void SystemdNotifier::keepalive() {
  if (watchdog_.count() == 0) return;
  auto now = std::chrono::steady_clock::now();
  if (now - last_ping_ < watchdog_) return;
  last_ping_ = now;
  send("WATCHDOG=1");
}

void SystemdNotifier::tick() {
  // A tick is the proof that the loop turns: that is what the watchdog is meant to watch.
  if (watchdog_.count() > 0) {
    last_ping_ = std::chrono::steady_clock::now();
    send("WATCHDOG=1");
  }
  std::string status = status_();
  if (status == last_status_) return;
  last_status_ = std::move(status);
  send("STATUS=" + last_status_);
}

void SystemdNotifier::close() {
  if (!timer_) return;
  uv_close(reinterpret_cast<uv_handle_t*>(timer_),
           [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
  timer_ = nullptr;
}

}  // namespace saga
