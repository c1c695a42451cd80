#include "engine/engine.hpp"

#include <algorithm>
#include <cmath>

namespace saga {
namespace {

void set_caller(Event& e, const std::optional<Caller>& caller) {
  if (!caller) return;
  e.uid = caller->uid;
  e.gid = caller->gid;
}

bool dependency_satisfied(const Definition& def, const Instance& inst, uint32_t dep) {
  const StepRun& s = inst.steps[dep];
  return s.state == StepState::succeeded ||
         (s.state == StepState::failed && def.steps[dep].continue_on_failure);
}

// Succeeded, or failed in a way the workflow lets pass.
bool step_done(const Definition& def, const Instance& inst, uint32_t i) {
  return dependency_satisfied(def, inst, i);
}

// The error of a step whose attempt a restart interrupted while, or before, the instance began
// compensating.
constexpr std::string_view kInterruptedNotRerun =
    "interrupted by a restart and not run again, as the instance is being compensated; what the "
    "attempt did is not undone";

bool failed_for_good(const Definition& def, const Instance& inst, uint32_t i) {
  return inst.steps[i].state == StepState::failed && !def.steps[i].continue_on_failure;
}

bool any_running(const Instance& inst) {
  return std::any_of(inst.steps.begin(), inst.steps.end(),
                     [](const StepRun& s) { return s.run.running || s.comp.running; });
}

bool anything_to_compensate(const Definition& def, const Instance& inst) {
  for (uint32_t i : inst.completion_order) {
    if (def.steps[i].compensate && inst.steps[i].state == StepState::succeeded) return true;
  }
  return false;
}

Event event_of(EventType type) {
  Event e;
  e.type = type;
  return e;
}

uint64_t mix(uint64_t h, std::string_view s) {
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

// Builds the events of one operation: each event is numbered, timestamped and applied to the
// instance as it is emitted, so the instance is always what replaying the journal would give.
class Emitter {
 public:
  // Room for what most transitions emit (a step's end, the next step's start or the instance's
  // end, and compensation's start): an Event is large, and growing the vector moves each.
  Emitter(const Definition& def, Instance& inst, TimePoint now, Transition& out,
          Starts starts = Starts::attempts)
      : def_(def), inst_(inst), now_(now), out_(out), starts_(starts) {
    out_.events.reserve(4);
    out_.actions.reserve(2);
  }

  void emit(Event e) {
    e.seq = inst_.seq + 1;
    e.at = now_;
    apply(def_, inst_, e);
    out_.events.push_back(std::move(e));
  }

  void step_event(EventType type, uint32_t step, uint32_t attempt) {
    Event e;
    e.type = type;
    e.step = def_.steps[step].name;
    e.attempt = attempt;
    emit(std::move(e));
  }

  void act(Action a) { out_.actions.push_back(a); }

  const Definition& def() const { return def_; }
  Instance& inst() { return inst_; }
  TimePoint now() const { return now_; }
  bool starts_attempts() const { return starts_ == Starts::attempts; }

 private:
  const Definition& def_;
  Instance& inst_;
  TimePoint now_;
  Transition& out_;
  Starts starts_;
};

void start_attempt(Emitter& em, uint32_t step, Phase phase) {
  if (!em.starts_attempts()) return;
  const StepRun& s = em.inst().steps[step];
  uint32_t attempt = (phase == Phase::run ? s.run.attempts : s.comp.attempts) + 1;
  em.step_event(phase == Phase::run ? EventType::step_started : EventType::compensation_started,
                step, attempt);
  em.act(Action{Action::Kind::run_attempt, step, phase, attempt, {}});
}

bool due(const AttemptCounter& c, TimePoint now) {
  return !c.retry_at || *c.retry_at <= now;
}

void advance_compensation(Emitter& em) {
  const Definition& def = em.def();
  Instance& inst = em.inst();
  // Compensation starts once no step of the instance is still running.
  if (any_running(inst)) return;
  for (auto it = inst.completion_order.rbegin(); it != inst.completion_order.rend(); ++it) {
    uint32_t i = *it;
    const StepRun& s = inst.steps[i];
    if (!def.steps[i].compensate) continue;
    if (s.state == StepState::compensated) continue;
    if (s.state == StepState::compensation_failed) {
      Event e;
      e.type = EventType::instance_compensation_failed;
      e.step = def.steps[i].name;
      e.error = s.comp.error;
      em.emit(std::move(e));
      return;
    }
    if (s.state != StepState::succeeded && s.state != StepState::compensating) continue;
    if (due(s.comp, em.now())) start_attempt(em, i, Phase::compensate);
    return;
  }
  em.emit(event_of(EventType::instance_compensated));
}

void advance(Emitter& em) {
  const Definition& def = em.def();
  Instance& inst = em.inst();
  if (inst.state == InstanceState::running) {
    const auto n = static_cast<uint32_t>(def.steps.size());
    std::optional<uint32_t> failed;
    uint32_t running = 0;
    for (uint32_t i = 0; i < n; ++i) {
      if (!failed && failed_for_good(def, inst, i)) failed = i;
      if (inst.steps[i].run.running) ++running;
    }
    if (!failed) {
      bool all_done = true;
      for (uint32_t i = 0; i < n; ++i) {
        const StepRun& s = inst.steps[i];
        if (!step_done(def, inst, i)) all_done = false;
        if (s.state != StepState::pending || s.run.running || running >= def.max_parallel) continue;
        if (!due(s.run, em.now())) continue;
        const auto& deps = def.steps[i].depends_on;
        if (!std::all_of(deps.begin(), deps.end(),
                         [&](uint32_t d) { return dependency_satisfied(def, inst, d); })) {
          continue;
        }
        start_attempt(em, i, Phase::run);
        ++running;
      }
      if (all_done) em.emit(event_of(EventType::instance_completed));
      return;
    }
    // A step failed for good: start nothing new, and decide once the running ones settle.
    if (running > 0) return;
    if (def.on_failure == OnFailure::halt || !anything_to_compensate(def, inst)) {
      Event e;
      e.type = EventType::instance_failed;
      e.step = def.steps[*failed].name;
      e.error = inst.steps[*failed].run.error;
      em.emit(std::move(e));
      return;
    }
    Event e;
    e.type = EventType::instance_compensating;
    e.cause = "step_failed";
    e.step = def.steps[*failed].name;
    em.emit(std::move(e));
  }
  if (inst.state == InstanceState::compensating) advance_compensation(em);
}

void begin_compensation(Emitter& em, std::string cause, std::string reason,
                        std::optional<Caller> caller) {
  bool stop = any_running(em.inst());
  Event e;
  e.type = EventType::instance_compensating;
  e.cause = std::move(cause);
  e.reason = std::move(reason);
  set_caller(e, caller);
  em.emit(std::move(e));
  if (stop) em.act(Action{Action::Kind::stop_attempts, 0, Phase::run, 0, {}});
  advance(em);
}

StepRun& step_of(const Definition& def, Instance& inst, const Event& e) {
  auto i = def.step_index(e.step);
  // A history that names a step its own definition lacks is a corrupt journal.
  if (!i || *i >= inst.steps.size()) std::abort();
  return inst.steps[*i];
}

}  // namespace

void apply(const Definition& def, Instance& inst, const Event& e) {
  inst.seq = e.seq;
  inst.updated_at = e.at;
  switch (e.type) {
    case EventType::instance_started:
      inst.workflow = e.workflow;
      inst.version = e.version;
      inst.input = e.input.is_null() ? json::object() : e.input;
      inst.created_at = e.at;
      inst.deadline = e.deadline;
      inst.state = InstanceState::running;
      inst.steps.assign(def.steps.size(), StepRun{});
      break;
    case EventType::step_started: {
      StepRun& s = step_of(def, inst, e);
      s.state = StepState::running;
      s.run.attempts = e.attempt;
      s.run.running = true;
      s.run.retry_at.reset();
      if (!s.started_at) s.started_at = e.at;
      break;
    }
    case EventType::step_succeeded: {
      StepRun& s = step_of(def, inst, e);
      s.state = StepState::succeeded;
      s.run.running = false;
      s.run.error.clear();
      s.output = e.output;
      s.ended_at = e.at;
      inst.completion_order.push_back(*def.step_index(e.step));
      // It finished after a cancel: it gets undone with the others.
      if (inst.state == InstanceState::compensating &&
          def.steps[inst.completion_order.back()].compensate) {
        s.compensation = CompensationState::pending;
      }
      break;
    }
    case EventType::step_failed: {
      StepRun& s = step_of(def, inst, e);
      s.run.running = false;
      s.run.error = e.error;
      s.run.retry_at = e.retry_at;
      if (e.retry_at) {
        s.state = StepState::pending;
      } else {
        s.state = StepState::failed;
        s.ended_at = e.at;
      }
      break;
    }
    case EventType::step_interrupted: {
      StepRun& s = step_of(def, inst, e);
      s.run.running = false;
      ++s.run.budget_base;
      if (inst.state == InstanceState::compensating) {
        // Not run again: it never succeeded, so it is not undone either. It ran, though, and
        // says so, for whoever checks what it may have done.
        s.state = StepState::failed;
        s.run.error = std::string(kInterruptedNotRerun);
        s.ended_at = e.at;
      } else {
        s.state = StepState::pending;
      }
      break;
    }
    case EventType::compensation_started: {
      StepRun& s = step_of(def, inst, e);
      s.state = StepState::compensating;
      s.compensation = CompensationState::running;
      s.comp.attempts = e.attempt;
      s.comp.running = true;
      s.comp.retry_at.reset();
      break;
    }
    case EventType::compensation_succeeded: {
      StepRun& s = step_of(def, inst, e);
      s.state = StepState::compensated;
      s.compensation = CompensationState::compensated;
      s.comp.running = false;
      s.comp.error.clear();
      break;
    }
    case EventType::compensation_failed: {
      StepRun& s = step_of(def, inst, e);
      s.comp.running = false;
      s.comp.error = e.error;
      s.comp.retry_at = e.retry_at;
      if (e.retry_at) {
        s.compensation = CompensationState::pending;
      } else {
        s.state = StepState::compensation_failed;
        s.compensation = CompensationState::failed;
      }
      break;
    }
    case EventType::compensation_interrupted: {
      StepRun& s = step_of(def, inst, e);
      s.comp.running = false;
      ++s.comp.budget_base;
      s.compensation = CompensationState::pending;
      break;
    }
    case EventType::instance_compensating:
      inst.state = InstanceState::compensating;
      inst.cause = e.cause;
      for (uint32_t i = 0; i < inst.steps.size(); ++i) {
        StepRun& s = inst.steps[i];
        if (s.state == StepState::pending && !s.run.running) {
          // One waiting for the timer of its next attempt failed, with the error it has, as did
          // one whose attempt a restart interrupted; one that has not run is skipped.
          if (s.run.retry_at || s.started_at) {
            s.state = StepState::failed;
            s.ended_at = e.at;
            if (s.run.error.empty()) s.run.error = std::string(kInterruptedNotRerun);
          } else {
            s.state = StepState::skipped;
          }
          s.run.retry_at.reset();
        }
        if (s.state == StepState::succeeded && def.steps[i].compensate) {
          s.compensation = CompensationState::pending;
        }
      }
      break;
    case EventType::instance_completed:
      inst.state = InstanceState::completed;
      break;
    case EventType::instance_compensated:
      inst.state = InstanceState::compensated;
      break;
    case EventType::instance_failed:
      inst.state = InstanceState::failed;
      break;
    case EventType::instance_compensation_failed:
      inst.state = InstanceState::compensation_failed;
      break;
    case EventType::instance_retried:
      if (!e.input.is_null()) inst.input = e.input;
      if (e.deadline) inst.deadline = e.deadline;
      if (inst.state == InstanceState::failed) {
        std::vector<uint32_t> rerun;
        if (!e.step.empty()) {
          rerun = downstream_of(def, *def.step_index(e.step));
        } else {
          for (uint32_t i = 0; i < inst.steps.size(); ++i) {
            if (failed_for_good(def, inst, i)) rerun.push_back(i);
          }
        }
        for (uint32_t i : rerun) {
          StepRun& s = inst.steps[i];
          s.state = StepState::pending;
          s.run.budget_base = s.run.attempts;
          s.run.retry_at.reset();
          s.run.error.clear();
          s.output = nullptr;
          s.started_at.reset();
          s.ended_at.reset();
          std::erase(inst.completion_order, i);
        }
        inst.state = InstanceState::running;
        inst.cause.clear();
      } else if (inst.state == InstanceState::compensation_failed) {
        for (StepRun& s : inst.steps) {
          if (s.state != StepState::compensation_failed) continue;
          s.state = StepState::succeeded;
          s.compensation = CompensationState::pending;
          s.comp.budget_base = s.comp.attempts;
          s.comp.error.clear();
        }
        inst.state = InstanceState::compensating;
      }
      break;
  }
}

Transition start(const Definition& def, Instance& inst, std::string id, json input,
                 std::optional<Caller> caller, TimePoint now) {
  Transition out;
  Emitter em(def, inst, now, out);
  inst.id = std::move(id);
  Event e;
  e.type = EventType::instance_started;
  e.workflow = def.name;
  e.version = def.version;
  e.input = std::move(input);
  set_caller(e, caller);
  if (def.timeout) e.deadline = now + *def.timeout;
  em.emit(std::move(e));
  if (inst.deadline) em.act(Action{Action::Kind::arm_deadline, 0, Phase::run, 0, *inst.deadline});
  advance(em);
  return out;
}

Millis retry_delay(const RetryPolicy& policy, uint32_t attempt, uint64_t seed) {
  double ms = static_cast<double>(policy.initial_interval.count()) *
              std::pow(policy.backoff, static_cast<double>(attempt > 0 ? attempt - 1 : 0));
  ms = std::min(ms, static_cast<double>(policy.max_interval.count()));
  if (policy.jitter > 0) {
    uint64_t h = (seed ^ attempt) * 0x9e3779b97f4a7c15ull;
    h ^= h >> 31;
    double fraction = static_cast<double>(h % 1'000'000) / 1'000'000.0;
    ms *= 1.0 - policy.jitter * fraction;
  }
  return Millis(static_cast<int64_t>(std::max(ms, 0.0)));
}

Transition on_attempt_result(const Definition& def, Instance& inst, const AttemptResult& r,
                             TimePoint now, Starts starts) {
  Transition out;
  if (r.step >= inst.steps.size()) return out;
  StepRun& s = inst.steps[r.step];
  AttemptCounter& counter = r.phase == Phase::run ? s.run : s.comp;
  if (!counter.running || counter.attempts != r.attempt) return out;  // stale
  Emitter em(def, inst, now, out, starts);
  const StepDef& step = def.steps[r.step];
  const bool run = r.phase == Phase::run;

  Event e;
  e.step = step.name;
  e.attempt = r.attempt;
  if (r.outcome == Outcome::ok) {
    e.type = run ? EventType::step_succeeded : EventType::compensation_succeeded;
    if (run) e.output = r.output.is_null() ? json::object() : r.output;
  } else {
    e.type = run ? EventType::step_failed : EventType::compensation_failed;
    // The journal and `inspect` treat an empty error as none: a failure always says something.
    e.error = r.error.empty() ? std::string(kNoErrorMessage) : r.error;
    // A run-phase retry makes sense only while the instance still runs forward.
    bool may_retry = r.outcome == Outcome::retry && counter.counted() < step.retry.max_attempts &&
                     (!run || inst.state == InstanceState::running);
    if (may_retry) {
      uint64_t seed = mix(mix(1469598103934665603ull, inst.id), step.name);
      e.retry_at = now + retry_delay(step.retry, counter.counted(), seed);
      em.act(Action{Action::Kind::arm_timer, r.step, r.phase, r.attempt + 1, *e.retry_at});
    }
  }
  em.emit(std::move(e));
  advance(em);
  return out;
}

Transition on_timer(const Definition& def, Instance& inst, uint32_t step, Phase phase,
                    TimePoint now, Starts starts) {
  Transition out;
  if (step >= inst.steps.size()) return out;
  const AttemptCounter& c = phase == Phase::run ? inst.steps[step].run : inst.steps[step].comp;
  if (!c.retry_at) return out;
  // A timer may fire a hair before its time by the caller's clock; it is due all the same.
  Emitter em(def, inst, std::max(now, *c.retry_at), out, starts);
  advance(em);
  return out;
}

Transition on_deadline(const Definition& def, Instance& inst, TimePoint now, Starts starts) {
  Transition out;
  if (inst.state != InstanceState::running) return out;
  Emitter em(def, inst, now, out, starts);
  begin_compensation(em, "timed_out", "", std::nullopt);
  return out;
}

Result<Transition> cancel(const Definition& def, Instance& inst, std::string reason,
                          std::optional<Caller> caller, TimePoint now) {
  if (inst.state != InstanceState::running && inst.state != InstanceState::failed) {
    return make_error(ErrorCode::failed_precondition,
                      "instance " + inst.id + " is " + std::string(to_string(inst.state)) +
                          "; cancel applies to running or failed instances");
  }
  Transition out;
  Emitter em(def, inst, now, out);
  begin_compensation(em, "cancelled", std::move(reason), caller);
  return out;
}

Result<Transition> retry(const Definition& def, Instance& inst, std::optional<std::string> from,
                         json input, std::optional<Caller> caller, TimePoint now) {
  if (inst.state == InstanceState::compensation_failed) {
    // New input may fix what a compensation's templates read; no step runs forward again.
    if (from) {
      return make_error(ErrorCode::invalid_argument,
                        "instance " + inst.id +
                            " is compensation_failed: retry resumes its compensations; --from "
                            "applies only to failed instances");
    }
  } else if (inst.state != InstanceState::failed) {
    return make_error(ErrorCode::failed_precondition,
                      "instance " + inst.id + " is " + std::string(to_string(inst.state)) +
                          "; retry applies to failed or compensation_failed instances");
  }
  if (from && !def.step_index(*from)) {
    return make_error(ErrorCode::not_found, "workflow " + def.name + " has no step " + *from);
  }
  if (from && inst.state == InstanceState::failed) {
    // A step that failed and is not run again fails the instance again at once: refused rather
    // than a retry that runs nothing.
    const std::vector<uint32_t> rerun = downstream_of(def, *def.step_index(*from));
    for (uint32_t i = 0; i < inst.steps.size(); ++i) {
      if (!failed_for_good(def, inst, i) ||
          std::find(rerun.begin(), rerun.end(), i) != rerun.end()) {
        continue;
      }
      return make_error(ErrorCode::invalid_argument,
                        "step " + def.steps[i].name + " failed and is not downstream of " + *from +
                            ", so the instance would fail again at once; retry --from " +
                            def.steps[i].name +
                            ", or without --from to run every failed step again");
    }
  }
  if (!input.is_null() && !input.is_object()) {
    return make_error(ErrorCode::invalid_argument, "retry input must be a JSON object");
  }
  Transition out;
  Emitter em(def, inst, now, out);
  Event e;
  e.type = EventType::instance_retried;
  e.step = from.value_or("");
  e.input = std::move(input);
  set_caller(e, caller);
  // The instance's timeout starts over, as its steps' attempt budgets do: a failed instance
  // waits for its operator, and the time it waited does not count against the run it resumes.
  const bool resumes_run = inst.state == InstanceState::failed;
  if (resumes_run && def.timeout) e.deadline = now + *def.timeout;
  em.emit(std::move(e));
  if (resumes_run && inst.deadline) {
    em.act(Action{Action::Kind::arm_deadline, 0, Phase::run, 0, *inst.deadline});
  }
  advance(em);
  return out;
}

Transition recover(const Definition& def, Instance& inst, TimePoint now) {
  Transition out;
  Emitter em(def, inst, now, out);
  for (uint32_t i = 0; i < inst.steps.size(); ++i) {
    const StepRun& s = inst.steps[i];
    if (s.run.running) em.step_event(EventType::step_interrupted, i, s.run.attempts);
    if (s.comp.running) em.step_event(EventType::compensation_interrupted, i, s.comp.attempts);
  }
  for (uint32_t i = 0; i < inst.steps.size(); ++i) {
    const StepRun& s = inst.steps[i];
    if (inst.state == InstanceState::running && s.state == StepState::pending && s.run.retry_at &&
        *s.run.retry_at > now) {
      em.act(Action{Action::Kind::arm_timer, i, Phase::run, s.run.attempts + 1, *s.run.retry_at});
    }
    if (inst.state == InstanceState::compensating && s.comp.retry_at && *s.comp.retry_at > now) {
      em.act(Action{Action::Kind::arm_timer, i, Phase::compensate, s.comp.attempts + 1,
                    *s.comp.retry_at});
    }
  }
  if (inst.state == InstanceState::running && inst.deadline) {
    if (*inst.deadline <= now) {
      begin_compensation(em, "timed_out", "", std::nullopt);
      return out;
    }
    em.act(Action{Action::Kind::arm_deadline, 0, Phase::run, 0, *inst.deadline});
  }
  advance(em);
  return out;
}

Instance replay(const Definition& def, std::string id, const std::vector<Event>& history) {
  Instance inst;
  inst.id = std::move(id);
  for (const Event& e : history) apply(def, inst, e);
  return inst;
}

std::vector<uint32_t> downstream_of(const Definition& def, uint32_t step) {
  std::vector<bool> in(def.steps.size(), false);
  in[step] = true;
  // Steps may depend only on steps listed before them or after; iterate to a fixed point.
  bool changed = true;
  while (changed) {
    changed = false;
    for (uint32_t i = 0; i < def.steps.size(); ++i) {
      if (in[i]) continue;
      for (uint32_t d : def.steps[i].depends_on) {
        if (in[d]) {
          in[i] = true;
          changed = true;
          break;
        }
      }
    }
  }
  std::vector<uint32_t> out;
  for (uint32_t i = 0; i < def.steps.size(); ++i) {
    if (in[i]) out.push_back(i);
  }
  return out;
}

}  // namespace saga
