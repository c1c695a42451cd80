// What sagad tells systemd through sd_notify: READY=1 once recovery is done, a STATUS= line
// with counts while it runs, STOPPING=1 when it drains, and WATCHDOG=1 at half of the unit's
// WatchdogSec. Outside systemd (no NOTIFY_SOCKET) every call costs next to nothing.
#pragma once

#include <uv.h>

#include <chrono>
#include <functional>
#include <string>

namespace saga {

class SystemdNotifier {
 public:
  // `status` returns the STATUS= text; it is asked on every tick and sent when it changed.
  // Loop thread only; `loop` must outlive this object, and close() must run before the loop
  // ends.
  SystemdNotifier(uv_loop_t* loop, std::function<std::string()> status);
  SystemdNotifier(const SystemdNotifier&) = delete;
  SystemdNotifier& operator=(const SystemdNotifier&) = delete;
  ~SystemdNotifier();

  // READY=1 with the first status; starts the ticks (status, watchdog).
  void ready();
  // STOPPING=1 with the status: systemd shows that sagad drains.
  void stopping();
  // WATCHDOG=1 when one is due: for long work before the loop runs, such as recovery.
  void keepalive();
  // Stops the ticks and closes the timer.
  void close();

  // Half of WatchdogSec when systemd watches this process, else zero.
  std::chrono::microseconds watchdog_interval() const { return watchdog_; }

 private:
  void tick();
  void send(const std::string& message);

  uv_timer_t* timer_ = nullptr;
  std::function<std::string()> status_;
  std::string last_status_;
  std::chrono::microseconds watchdog_{0};
  std::chrono::steady_clock::time_point last_ping_{};
};

}  // namespace saga
