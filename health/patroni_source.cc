// Polling Patroni: one /cluster request at a time; a URL that fails makes the next one be
// tried at once, so a dead Patroni among several costs one timeout, not a period.
#include "health/patroni_source.h"

#include <spdlog/spdlog.h>

namespace pgswitch::health {

namespace {

std::string trimSlash(std::string s) {
  while (!s.empty() && s.back() == '/') s.pop_back();
  return s;
}

}  // namespace

PatroniSource::PatroniSource(uv_loop_t* loop, PatroniSettings settings,
                             std::vector<BackendSpec> backends, Host& host)
    : settings_(std::move(settings)),
      backends_(std::move(backends)),
      host_(host),
      http_(std::make_unique<HttpClient>(loop)),
      timer_(loop, this) {
  for (auto& u : settings_.urls) u = trimSlash(u);
}

PatroniSource::~PatroniSource() { close(); }

void PatroniSource::start() {
  timer_.start(&PatroniSource::onTimer, 0, static_cast<uint64_t>(std::max(1, settings_.periodMs)));
}

void PatroniSource::onTimer(uv_timer_t* t) noexcept {
  static_cast<PatroniSource*>(t->data)->poll();
}

void PatroniSource::pollSoon() {
  if (closed_) return;
  if (polling_) {
    again_ = true;
    return;
  }
  poll();
}

void PatroniSource::poll() {
  if (closed_ || polling_ || settings_.urls.empty()) return;
  polling_ = true;
  tryUrl(0);
}

void PatroniSource::tryUrl(int attempt) {
  HttpRequest req;
  req.url = settings_.urls[cur_] + "/cluster";
  req.timeoutMs = settings_.timeoutMs;
  req.caFile = settings_.caFile;
  http_->send(std::move(req), [this, attempt](HttpResponse r) { onAnswer(attempt, std::move(r)); });
}

void PatroniSource::onAnswer(int attempt, HttpResponse r) {
  if (closed_) return;
  std::string why;
  std::optional<std::vector<PatroniMember>> members;
  if (!r.ok) {
    why = r.error;
  } else if (r.status != 200) {
    why = "HTTP " + std::to_string(r.status);
  } else {
    members = parsePatroniCluster(r.body, &why);
  }
  const std::string& url = settings_.urls[cur_];
  if (!members) {
    spdlog::debug("patroni: {}/cluster: {}", url, why);
    if (attempt + 1 < static_cast<int>(settings_.urls.size())) {
      cur_ = (cur_ + 1) % settings_.urls.size();
      tryUrl(attempt + 1);
      return;
    }
    polling_ = false;
    if (!unreachable_) {
      unreachable_ = true;
      host_.onPatroniReachability(false, "no Patroni REST API answered /cluster (last: " + url +
                                             ": " + why + "); keeping the last known leader");
    }
    again_ = false;
    return;
  }
  polling_ = false;
  if (unreachable_) {
    unreachable_ = false;
    host_.onPatroniReachability(true, url + " answered /cluster");
  }
  PatroniView view = matchPatroniMembers(std::move(*members), backends_);
  // Members at no configured address are ignored (docs/patroni.md); said once per name.
  for (const auto& name : view.unmatched) {
    if (warned_.insert(name).second)
      spdlog::warn("patroni: member {} matches no [[backend]] host:port; ignored", name);
  }
  host_.onPatroniView(view);
  if (again_ && !closed_) {
    again_ = false;
    poll();
  }
}

void PatroniSource::switchover(const std::string& leader, const std::string& candidate,
                               SwitchoverDone done) {
  // Any member's REST API takes /switchover (it writes the request to the DCS and waits for
  // the outcome); the one that answered /cluster last is known to be reachable from here,
  // which a member's api_url (its restapi.connect_address) need not be.
  HttpRequest req;
  const std::string url = settings_.urls[cur_] + "/switchover";
  req.url = url;
  req.method = "POST";
  req.body = patroniSwitchoverBody(leader, candidate);
  req.timeoutMs = settings_.switchoverTimeoutMs;
  req.username = settings_.username;
  req.password = settings_.password;
  req.caFile = settings_.caFile;
  spdlog::info("patroni: POST {} {}", url, req.body);
  http_->send(std::move(req), [done = std::move(done), url](HttpResponse r) {
    SwitchoverAnswer a;
    if (!r.ok) {
      a.message = url + ": " + r.error;
    } else {
      a.ok = r.status == 200;
      std::string body = r.body;
      while (!body.empty() && (body.back() == '\n' || body.back() == '\r')) body.pop_back();
      a.message = a.ok ? body : "Patroni answered HTTP " + std::to_string(r.status) + ": " + body;
    }
    if (done) done(std::move(a));
  });
}

void PatroniSource::close() {
  if (closed_) return;
  closed_ = true;
  timer_.close();
  http_->close();
}

}  // namespace pgswitch::health
