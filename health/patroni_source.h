// PatroniSource: on the health thread's loop, reads Patroni's /cluster every period (trying
// each configured REST API URL in turn until one answers), hands the parsed, matched view to
// its host, reports when Patroni becomes unreachable or reachable again, and sends
// /switchover for the console. Uses HttpClient (libcurl on libuv); never blocks the loop.
#pragma once

#include <uv.h>

#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "health/heap_timer.h"
#include "health/http_client.h"
#include "health/patroni_view.h"
#include "health/settings.h"

namespace pgswitch::health {

class PatroniSource {
 public:
  class Host {
   public:
    virtual ~Host() = default;
    virtual void onPatroniView(const PatroniView& view) = 0;
    // ok=false: no URL answered (detail says why); ok=true: answered again after that.
    virtual void onPatroniReachability(bool ok, const std::string& detail) = 0;
  };
  struct SwitchoverAnswer {
    bool ok = false;      // Patroni answered 200
    std::string message;  // Patroni's answer, or the transport error
  };
  using SwitchoverDone = std::function<void(SwitchoverAnswer)>;

  PatroniSource(uv_loop_t* loop, PatroniSettings settings, std::vector<BackendSpec> backends,
                Host& host);
  ~PatroniSource();

  void start();     // the first poll at once, then one every periodMs
  void pollSoon();  // an extra poll now (a probe saw a role change); none if one is running
  // POST /switchover with {"leader", "candidate"} to the URL that answered /cluster last.
  void switchover(const std::string& leader, const std::string& candidate, SwitchoverDone done);
  void close();  // closes the timer and the HTTP client; pending switchover answers fail

 private:
  static void onTimer(uv_timer_t* t) noexcept;
  void poll();
  void tryUrl(int attempt);
  void onAnswer(int attempt, HttpResponse r);

  PatroniSettings settings_;
  std::vector<BackendSpec> backends_;
  Host& host_;
  std::unique_ptr<HttpClient> http_;
  HeapTimer timer_;
  size_t cur_ = 0;     // the URL that answered last: tried first
  bool polling_ = false;
  bool again_ = false;  // pollSoon() during a poll: poll once more when it ends
  bool unreachable_ = false;
  bool closed_ = false;
  std::set<std::string> warned_;  // unmatched member names already logged
};

}  // namespace pgswitch::health
