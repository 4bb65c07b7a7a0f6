"""The speaker's Prometheus metrics, read from plain counters at scrape time (adapter ring).

Place in the flow: ``speaker.Speaker`` (announcer stats, membership counters, registry) ->
``Collector.collect`` on each scrape of /metrics. The hot paths only bump plain ints.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily

from . import events, membership


class Timer:
    """Count and total seconds of a repeated step (exported as a summary: rate(sum)/rate(count))."""

    def __init__(self) -> None:
        self.count, self.total = 0, 0.0

    def observe(self, seconds: float) -> None:
        self.count += 1
        self.total += seconds


class Collector:
    """Speaker metrics (registered once per process)."""

    def __init__(self, speaker: Any) -> None:  # a speaker.Speaker (no import: it sits above us)
        self.s = speaker

    def collect(self) -> Iterable[Any]:
        yield from self._answers()
        yield from self._membership()
        yield from self._owners()

    def _answers(self) -> Iterable[Any]:
        s, stats = self.s, self.s.announcer.stats
        yield GaugeMetricFamily("l2lb_speaker_owned_ips", "IPs this node announces now",
                                value=len(s.announcer.owned))
        answered = CounterMetricFamily("l2lb_speaker_requests_answered", "ARP/NDP requests answered",
                                       labels=["kind"])
        for kind in ("arp", "ns", "dad"):
            answered.add_metric([kind], stats.answered[kind])
        yield answered
        dropped = CounterMetricFamily("l2lb_speaker_frames_dropped", "Frames not answered, by reason",
                                      labels=["reason"])
        for verdict, n in sorted(stats.dropped.items(), key=lambda kv: kv[0].name):
            dropped.add_metric([verdict.name.lower()], n)
        yield dropped
        yield CounterMetricFamily("l2lb_speaker_garps_sent", "Gratuitous ARP / unsolicited NA sent",
                                  value=stats.announcements)
        limited = CounterMetricFamily("l2lb_speaker_answers_rate_limited",
                                      "Answers held back by the per-requester/target/total limits",
                                      labels=["limit"])
        for limit in ("requester", "target", "total"):
            limited.add_metric([limit], stats.rate_limited[limit])
        yield limited

    def _owners(self) -> Iterable[Any]:
        s = self.s
        recompute = SummaryMetricFamily("l2lb_speaker_owner_update_seconds",
                                        "Time spent updating owners after a change (syncs that changed some)")
        recompute.add_metric([], s.recompute.count, s.recompute.total)
        yield recompute
        yield CounterMetricFamily("l2lb_speaker_ips_recomputed", "IPs whose owner was recomputed",
                                  value=s.index.recomputed)
        yield GaugeMetricFamily("l2lb_speaker_ips_known", "LoadBalancer IPs this speaker knows",
                                value=len(s.index.choices))

    def _membership(self) -> Iterable[Any]:
        s, m, now = self.s, self.s.members, time.monotonic()
        yield CounterMetricFamily("l2lb_speaker_heartbeats_sent", "LAN heartbeat frames sent",
                                  value=s.link.sent)
        yield CounterMetricFamily("l2lb_speaker_heartbeats_accepted", "LAN heartbeats accepted",
                                  value=m.accepted)
        rejected = CounterMetricFamily("l2lb_speaker_heartbeats_rejected",
                                       "LAN heartbeats ignored, by reason (forged, replayed...)",
                                       labels=["reason"])
        for reason in membership.Reject:
            rejected.add_metric([reason.name.lower()], m.rejected[reason])
        yield rejected
        yield GaugeMetricFamily("l2lb_speaker_live_peers", "Peers proven live on the LAN now",
                                value=len(m.proven(now)))
        yield GaugeMetricFamily("l2lb_speaker_candidate", "1 while this node takes part in owning IPs",
                                value=1 if s.ready else 0)
        yield GaugeMetricFamily("l2lb_speaker_fenced", "1 while this node may not answer",
                                value=0 if now < m.fence(now) and s.ready else 1)
        yield GaugeMetricFamily("l2lb_speaker_api_fresh", "1 while this node's view of the API is fresh",
                                value=1 if s.api_fresh(now) else 0)
        yield GaugeMetricFamily("l2lb_speaker_keys_loaded", "1 once heartbeat keys are loaded",
                                value=1 if s.keys_loaded else 0)
        yield CounterMetricFamily("l2lb_speaker_keyring_errors", "Unusable heartbeat key Secrets seen",
                                  value=s.keyring_errors)
        yield CounterMetricFamily("l2lb_speaker_api_requests",
                                  "HTTP requests sent to the API server, all kinds (a watch counts once)",
                                  value=sum(c.request_count for c in s.clients if c is not None))
        sent = CounterMetricFamily("l2lb_speaker_events", "nodeAssigned Events by outcome: written, failed, "
                                   "aggregated (a repeat within 10 minutes), dropped (backlog full)",
                                   labels=["outcome"])
        writer, counts = s.events, s.events.aggregator.counts
        by_verdict = {v: sum(n for key, n in counts.items() if key[0] is v) for v in events.Verdict}
        for outcome, n in (("written", writer.written), ("failed", writer.failed),
                           ("aggregated", by_verdict[events.Verdict.AGGREGATED]),
                           ("dropped", by_verdict[events.Verdict.DROPPED])):
            sent.add_metric([outcome], n)
        yield sent
        yield GaugeMetricFamily("l2lb_speaker_events_queued",
                                "Events not yet written: waiting for their budget, or being sent",
                                value=writer.pending())
        yield GaugeMetricFamily("l2lb_speaker_ipannouncements_pending",
                                "IPs whose IPAnnouncement awaits a write (drained at the writer's "
                                "rate limit)",
                                value=s.status.backlog())
        yield CounterMetricFamily("l2lb_speaker_api_writes", "Registration Lease writes sent",
                                  value=s.registry.writes)
        yield CounterMetricFamily("l2lb_speaker_api_probes", "GETs of the registration (API freshness probe)",
                                  value=s.registry.probes)
