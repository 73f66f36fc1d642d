// on_event hook processes. A child's uv_process_t lives until its close callback; the runner
// only starts the next queued hook from there, so children never outnumber kMaxRunning.
#include "health/event_hook.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstring>
#include <vector>

extern char** environ;

namespace pgswitch::health {

struct EventHookRunner::Child {
  uv_process_t proc;
  EventHookRunner* owner;
  std::string event;
  Child* prev = nullptr;
  Child* next = nullptr;
  bool closing = false;
};

EventHookRunner::EventHookRunner(uv_loop_t* loop, std::string command)
    : loop_(loop), command_(std::move(command)) {}

EventHookRunner::~EventHookRunner() = default;

void EventHookRunner::run(const Event& e) {
  if (!enabled() || closed_) return;
  if (running_ < kMaxRunning) {
    spawn(e);
  } else if (queue_.size() < kMaxQueued) {
    queue_.push_back(e);
  } else {
    ++dropped_;
    spdlog::warn("health: on_event queue full, dropped the hook for event={} backend={}",
                 toString(e.type), e.name);
  }
}

void EventHookRunner::spawn(const Event& e) {
  std::vector<std::string> env;
  for (char** p = environ; p != nullptr && *p != nullptr; ++p) {
    if (std::strncmp(*p, "PGSWITCH_", 9) != 0) env.emplace_back(*p);
  }
  for (auto& kv : eventEnvironment(e)) env.push_back(std::move(kv));
  std::vector<char*> envp;
  for (auto& s : env) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::string sh = "/bin/sh", dashC = "-c", cmd = command_;
  char* args[] = {sh.data(), dashC.data(), cmd.data(), nullptr};

  // The hook's output goes to our stderr (the log), never to stdout.
  uv_stdio_container_t stdio[3];
  stdio[0].flags = UV_IGNORE;
  stdio[1].flags = UV_INHERIT_FD;
  stdio[1].data.fd = 2;
  stdio[2].flags = UV_INHERIT_FD;
  stdio[2].data.fd = 2;

  auto* c = new Child;
  c->owner = this;
  c->event = toString(e.type);
  uv_process_options_t opts{};
  opts.file = sh.c_str();
  opts.args = args;
  opts.env = envp.data();
  opts.stdio = stdio;
  opts.stdio_count = 3;
  opts.exit_cb = [](uv_process_t* p, int64_t status, int signal) {
    auto* child = static_cast<Child*>(p->data);
    if (status != 0 || signal != 0) {
      spdlog::warn("health: on_event hook for event={} exited with status {} signal {}",
                   child->event, status, signal);
    }
    child->owner->childGone(child);
  };
  c->proc.data = c;
  c->next = children_;
  if (children_) children_->prev = c;
  children_ = c;
  ++running_;  // until the close callback
  int rc = uv_spawn(loop_, &c->proc, &opts);
  if (rc != 0) {
    spdlog::error("health: cannot run on_event hook for event={}: {}", c->event, uv_strerror(rc));
    // A failed uv_spawn still initialised the handle: it is closed like any other.
    childGone(c);
  }
}

void EventHookRunner::childGone(Child* c) {
  if (c->closing) return;
  c->closing = true;
  uv_close(reinterpret_cast<uv_handle_t*>(&c->proc), [](uv_handle_t* h) {
    auto* child = static_cast<Child*>(h->data);
    EventHookRunner* self = child->owner;
    if (child->prev) child->prev->next = child->next;
    if (child->next) child->next->prev = child->prev;
    if (self->children_ == child) self->children_ = child->next;
    --self->running_;
    delete child;
    if (!self->closed_ && !self->queue_.empty() && self->running_ < kMaxRunning) {
      Event next = std::move(self->queue_.front());
      self->queue_.pop_front();
      self->spawn(next);
    }
  });
}

void EventHookRunner::close() {
  closed_ = true;
  queue_.clear();
  for (Child* c = children_; c != nullptr; c = c->next) childGone(c);
}

}  // namespace pgswitch::health
