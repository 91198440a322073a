"""The Redis key layout: every key tuneloop writes is named here, under one prefix.

Nothing else in tuneloop spells a key. The prefix (config ``redis.prefix``) lets tuneloop share the
bot's Redis; RQ's own keys live under RQ's ``rq:`` prefix, in the queue named by config.
"""

from __future__ import annotations

from dataclasses import dataclass

# Cumulative counters (ARCHITECTURE.md, "Counters"), fields of the ``stats`` hash.
PIPELINE_COUNTERS = (
    "captured", "anonymized", "filtered_out", "analyzed", "qa_passed", "qa_failed",
    "needs_review", "exported", "dropped", "discarded", "erased",
)
# Extra operational counters (not in the seed's stats object, exported to /metrics).
EXTRA_COUNTERS = ("capture_errors", "spilled", "replayed", "retried", "purged")
# The anonymizer's counters, fields of the ``anon_stats`` hash (the seed's names plus ours).
ANON_COUNTERS = (
    "total_processed", "phones_found", "emails_found", "addresses_found",
    "ids_found", "accounts_found", "names_found",
)
STATUSES = ("pending", "approved", "needs_review", "rejected")


@dataclass(frozen=True)
class Keys:
    prefix: str = "tuneloop:"

    # records ------------------------------------------------------------------------------
    def record(self, record_id: str) -> str:
        """Hash of one record (fields: see middleware.record)."""
        return f"{self.prefix}r:{record_id}"

    @property
    def record_prefix(self) -> str:
        return f"{self.prefix}r:"

    def user_index(self, pseudonym: str) -> str:
        """Sorted set of a user's record ids, scored by capture time (ms)."""
        return f"{self.prefix}u:{pseudonym}"

    @property
    def time_index(self) -> str:
        """Sorted set of every record id, scored by capture time (ms)."""
        return f"{self.prefix}idx:time"

    def status(self, status: str) -> str:
        """Set of record ids in one status (pending, approved, needs_review, rejected)."""
        return f"{self.prefix}status:{status}"

    @property
    def dedupe(self) -> str:
        """Hash: normalized-text hash -> the first record id that carried it."""
        return f"{self.prefix}dedupe"

    def review_claim(self, record_id: str) -> str:
        return f"{self.prefix}review:claim:{record_id}"

    # counters -----------------------------------------------------------------------------
    @property
    def stats(self) -> str:
        return f"{self.prefix}stats"

    @property
    def anon_stats(self) -> str:
        return f"{self.prefix}stats:anon"

    def daily(self, day: str) -> str:
        """Per-day counters (YYYY-MM-DD) for the funnel chart."""
        return f"{self.prefix}stats:day:{day}"

    @property
    def users_seen(self) -> str:
        """HyperLogLog of pseudonyms seen: countable, not listable."""
        return f"{self.prefix}users:seen"

    # consent ------------------------------------------------------------------------------
    def consent(self, pseudonym: str) -> str:
        """Hash: state, version, lang, mechanism, ts, erased_at, asked."""
        return f"{self.prefix}consent:{pseudonym}"

    @property
    def consent_prefix(self) -> str:
        """What every consent hash's key starts with (Lua scripts append the pseudonym)."""
        return self.consent("")

    def consent_events(self, pseudonym: str) -> str:
        """List of grant/withdrawal events (JSON, no text)."""
        return f"{self.prefix}consent:events:{pseudonym}"

    @property
    def consent_active(self) -> str:
        """Set of pseudonyms whose consent is active now."""
        return f"{self.prefix}consent:active"

    @property
    def consent_channel(self) -> str:
        """Pub/sub channel: consent changes and erasures, to every bot process."""
        return f"{self.prefix}consent:changes"

    # meta ---------------------------------------------------------------------------------
    @property
    def secret_fingerprint(self) -> str:
        return f"{self.prefix}meta:secret_fingerprint"

    @property
    def exports(self) -> str:
        """List of export summaries (JSON), newest first."""
        return f"{self.prefix}exports"

    def export_run(self, token: str) -> str:
        """One export's working state, a namespace of its own (workers.export_ledger): ``U`` user
        -> index, ``L`` users in order, ``Z`` users sorted, ``S`` split sides, ``s<n>`` duplicate
        buckets. Every key carries a TTL and is removed when the export ends."""
        return f"{self.prefix}exports:run:{token}:"

    def mydata_link(self, token: str) -> str:
        """A short-lived /mydata download link (WhatsApp): token -> pseudonym."""
        return f"{self.prefix}mydata:{token}"

    @property
    def scheduler_lock(self) -> str:
        """Held by the one scheduler that acts (any number may run)."""
        return f"{self.prefix}scheduler:lock"

    @property
    def batches(self) -> str:
        """Hash: OpenAI batch id -> JSON of its record ids (Batch API mode)."""
        return f"{self.prefix}openai:batches"
