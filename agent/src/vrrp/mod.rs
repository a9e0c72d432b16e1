//! The VRRP state machine: pure, sans-IO.
//!
//! [`Router::handle`]`(now_ns, Input) -> Vec<Action>` is the whole interface
//! ([`Router::handle_into`] appends to a reused buffer instead). Time is
//! CLOCK_MONOTONIC nanoseconds passed in; the router reads no clock, opens
//! no socket and spawns nothing. Timers are requests ([`Action::ArmTimer`],
//! absolute deadlines) that the runtime turns into `timerfd`s and feeds back
//! as [`Input::TimerFired`]; a fire that is stale (re-armed or cancelled
//! since) is ignored, so the runtime never has to race cancellations.
//!
//! The down timer counts from the kernel receive timestamp of the advert
//! ([`AdvertMeta::ts_ns`]), so a late userspace does not push the deadline.
//! Skew and Master_Down_Interval are exact nanoseconds ([`skew_ns`],
//! [`master_down_ns`]).
//!
//! Split of work with the runtime:
//! - `SendAdvert` carries priority and interval; the runtime encodes it with
//!   the configured VIPs, source address and checksum form.
//! - `SendGratuitous { count, spacing_ns }` starts one batch; the sender
//!   paces the messages (`garp_interval` / `gna_interval`). The state
//!   machine schedules batches (`GarpDelay`, `GarpRefresh`, `GarpLowerPrio`).
//! - `Transition` comes first in a list so its time precedes its effects;
//!   the runtime appends "VIP added" and "first GARP sent" times to it.
//! - `Notify` is emitted after the VIP change it reports; shutdown is a
//!   transition to `Initialize`, which the runtime reports as keepalived's STOP.
//!
//! Sync groups ([`SyncGroup`]) wrap several routers and move them together.
//!
//! # Rules and their tests
//!
//! Every rule below has one test of that name in a topic module of
//! `vrrp::tests`: rules 1–6 in `timers`, 7–10 in `startup`, 11–21 in
//! `backup`, 22–37 in `master`, 38–49 in `receive`, 50–58 in `tracking`,
//! 59–65 in `configuration`, 66–69, 81 and 82 in `gratuitous`, 70–73 in
//! `reload`, 74–78 in `sync_groups`, 79 in `receive`, 80 and 85 in
//! `master`, 83 and 84 in `backup`.
//!
//! | # | Rule | Source | Test |
//! |---|---|---|---|
//! | 1 | v2 Skew_Time = (256 − Priority) / 256 s | RFC 3768 §6.1 | `rfc3768_6_1_v2_skew_is_fraction_of_a_second` |
//! | 2 | v3 Skew_Time = (256 − Priority) × Master_Adver_Interval / 256, in ns | RFC 9568 §6.1 | `rfc9568_6_1_v3_skew_scales_with_interval_in_ns` |
//! | 3 | Master_Down_Interval = 3 × Master_Adver_Interval + Skew_Time | RFC 9568 §6.1 | `rfc9568_6_1_master_down_is_three_intervals_plus_skew` |
//! | 4 | Master_Down_Interval is not rounded (sub-µs precision) | DESIGN | `master_down_interval_is_exact_nanoseconds` |
//! | 5 | `down_timer_adverts` replaces the 3 | keepalived | `keepalived_down_timer_adverts_replaces_three` |
//! | 6 | Skew uses the effective priority | keepalived | `keepalived_skew_uses_effective_priority` |
//! | 7 | Startup, priority 255: advert, VIPs, GARP, Master | RFC 9568 §6.4.1 | `rfc9568_6_4_1_owner_starts_as_master` |
//! | 8 | Startup, priority < 255: Backup, down timer armed | RFC 9568 §6.4.1 | `rfc9568_6_4_1_non_owner_starts_as_backup_with_down_timer` |
//! | 9 | `state MASTER` below 255 still waits in Backup | keepalived | `keepalived_state_master_below_255_starts_in_backup` |
//! | 10 | Startup with a failed weight-0 tracker: Fault | keepalived | `keepalived_startup_with_failed_tracker_enters_fault` |
//! | 11 | Backup, down timer fires: advert, VIPs, GARP, Master (in that order) | RFC 9568 §6.4.2 | `rfc9568_6_4_2_down_timer_expiry_becomes_master` |
//! | 12 | Backup, priority-0 advert: down timer = Skew_Time | RFC 9568 §6.4.2 | `backup_on_priority_zero_arms_skew_timer` |
//! | 13 | Backup, advert ≥ our priority: reset down timer | RFC 9568 §6.4.2 | `rfc9568_6_4_2_backup_higher_priority_resets_down_timer` |
//! | 14 | The down timer counts from the kernel receive timestamp | DESIGN | `down_timer_is_armed_from_kernel_timestamp` |
//! | 15 | v3 Backup adopts the master's advert interval | RFC 9568 §6.4.2 | `rfc9568_6_4_2_backup_adopts_master_interval` |
//! | 16 | Backup with preemption discards a lower-priority advert | RFC 9568 §6.4.2 | `rfc9568_6_4_2_backup_discards_lower_priority_when_preempting` |
//! | 17 | Preemption off (`nopreempt`): lower-priority advert resets the timer | RFC 9568 §6.4.2, keepalived | `keepalived_nopreempt_accepts_lower_priority_master` |
//! | 18 | Backups never break ties on address | RFC 9568 §6.4.2 | `rfc9568_6_4_2_backup_never_breaks_ties_on_address` |
//! | 19 | `preempt_delay` holds a preempting backup, then lets it preempt | keepalived | `keepalived_preempt_delay_holds_then_preempts` |
//! | 20 | `preempt_delay` restarts when a ≥ priority master appears | keepalived | `keepalived_preempt_delay_cancelled_by_better_master` |
//! | 21 | A stale timer fire is ignored | design | `stale_timer_fire_is_ignored` |
//! | 22 | Master, advert timer: send advert, keep the cadence | RFC 9568 §6.4.3 | `rfc9568_6_4_3_master_advert_timer_sends_and_rearms` |
//! | 23 | Master, priority-0 advert: send advert, reset Adver_Timer | RFC 9568 §6.4.3 | `rfc9568_6_4_3_master_priority_zero_sends_advert` |
//! | 24 | Master, higher priority: Backup, VIPs removed, down timer | RFC 9568 §6.4.3 | `rfc9568_6_4_3_master_higher_priority_goes_backup` |
//! | 25 | Master, equal priority and greater address: Backup | RFC 9568 §6.4.3 | `rfc9568_6_4_3_master_equal_priority_greater_address_goes_backup` |
//! | 26 | Master, equal priority and smaller address: stay Master | RFC 9568 §6.4.3 | `rfc9568_6_4_3_master_equal_priority_smaller_address_stays` |
//! | 27 | Address compare is unsigned, network order | RFC 9568 §6.4.3 | `rfc9568_6_4_3_address_compare_is_unsigned_network_order` |
//! | 28 | Master, lower priority: advert at once, stay Master | RFC 9568 §6.4.3 | `rfc9568_6_4_3_master_lower_priority_sends_advert` |
//! | 29 | `lower_prio_no_advert` suppresses that advert | keepalived | `keepalived_lower_prio_no_advert_suppresses_advert` |
//! | 30 | Lower-priority advert as Master re-announces VIPs (split brain heals) | keepalived `garp_lower_prio_repeat/delay` | `keepalived_lower_priority_advert_reannounces_vips` |
//! | 31 | `higher_prio_send_advert`: one advert before stepping down | keepalived | `keepalived_higher_prio_send_advert_sends_before_backup` |
//! | 32 | v3 Master stepping down adopts the new master's interval | RFC 9568 §6.4.3 | `rfc9568_6_4_3_master_adopts_interval_when_stepping_down` |
//! | 33 | Two owners: the one that hears the other drops to 254 | keepalived | `keepalived_two_owners_one_drops_to_254` |
//! | 34 | Owner priority never moves with weights | keepalived | `keepalived_owner_priority_ignores_weights` |
//! | 35 | Owner leaving Fault goes straight to Master | keepalived | `keepalived_owner_leaving_fault_becomes_master` |
//! | 36 | Shutdown as Master: priority-0 advert, VIPs removed | RFC 9568 §6.4.3, keepalived | `rfc9568_6_4_3_shutdown_as_master_sends_priority_zero` |
//! | 37 | Shutdown as Backup: only notify | RFC 9568 §6.4.2 | `rfc9568_6_4_2_shutdown_as_backup_only_notifies` |
//! | 38 | v2 advert interval mismatch: discard | RFC 3768 §7.1 | `rfc3768_7_1_interval_mismatch_discarded` |
//! | 39 | v2 auth type mismatch: discard | RFC 3768 §7.1, keepalived | `rfc3768_7_1_auth_type_mismatch_discarded` |
//! | 40 | v2 PASS mismatch: discard | keepalived | `keepalived_auth_pass_mismatch_discarded` |
//! | 41 | TTL/hop limit ≠ 255: discard | RFC 9568 §7.1 | `rfc9568_7_1_ttl_not_255_discarded` |
//! | 42 | Unicast instances skip the TTL check | keepalived | `keepalived_unicast_skips_ttl_check` |
//! | 43 | VRID not ours: discard | RFC 9568 §7.1 | `rfc9568_7_1_wrong_vrid_discarded` |
//! | 44 | Version not ours: discard | RFC 9568 §7.1 | `rfc9568_7_1_wrong_version_discarded` |
//! | 45 | Address count / list mismatch: discard | RFC 9568 §7.1 (MAY), keepalived | `keepalived_address_list_mismatch_discarded` |
//! | 46 | `skip_check_adv_addr` skips the list check for the known master | keepalived | `keepalived_skip_check_adv_addr_for_known_master` |
//! | 47 | `check_unicast_src`: source must be a peer | keepalived | `keepalived_check_unicast_src_rejects_strangers` |
//! | 48 | Multicast advert on a unicast instance (and reverse): discard | keepalived | `keepalived_unicast_multicast_mismatch_discarded` |
//! | 49 | Fault and Initialize ignore adverts | keepalived | `keepalived_fault_ignores_adverts` |
//! | 50 | Positive weight adds when up | keepalived `track_*` | `keepalived_track_positive_weight_adds_when_up` |
//! | 51 | Negative weight subtracts when down | keepalived `track_*` | `keepalived_track_negative_weight_subtracts_when_down` |
//! | 52 | `reverse` flips the adjustment | keepalived | `keepalived_track_reverse_flips_direction` |
//! | 53 | Effective priority clamped to 1..254 | keepalived | `keepalived_track_priority_clamped_1_to_254` |
//! | 54 | Weight-0 failure: Master → Fault with priority-0 advert, VIPs removed | keepalived | `keepalived_weight_zero_failure_master_enters_fault` |
//! | 55 | Fault cleared: Backup with a fresh down timer | keepalived | `keepalived_fault_cleared_returns_to_backup` |
//! | 56 | `track_file`: value × weight, −254 faults | keepalived | `keepalived_track_file_value_times_weight` |
//! | 57 | `track_file` weight 0: non-zero faults | keepalived | `keepalived_track_file_weight_zero_nonzero_faults` |
//! | 58 | Backup priority rise shortens the running down timer | keepalived | `keepalived_backup_priority_rise_shortens_down_timer` |
//! | 59 | `nopreempt` needs `state BACKUP` | keepalived | `keepalived_nopreempt_needs_state_backup` |
//! | 60 | `nopreempt` is meaningless for the owner | keepalived | `keepalived_nopreempt_reset_for_owner` |
//! | 61 | `vrrp_strict` forbids authentication | keepalived | `keepalived_strict_forbids_auth` |
//! | 62 | `vrrp_strict` forbids unicast peers | keepalived | `keepalived_strict_forbids_unicast` |
//! | 63 | `vrrp_strict` forces `lower_prio_no_advert`, clears `higher_prio_send_advert`, no lower-prio GARP | keepalived | `keepalived_strict_forces_rfc_master_behaviour` |
//! | 64 | `vrrp_strict` disables `preempt_delay` | keepalived | `keepalived_strict_disables_preempt_delay` |
//! | 65 | Invalid configurations refused (v2 over IPv6, VRID 0, no VIPs, bad interval) | RFC 3768, RFC 9568 §5.2 | `invalid_configurations_are_refused` |
//! | 66 | `garp_master_delay`: second GARP batch | keepalived | `keepalived_garp_master_delay_sends_second_batch` |
//! | 67 | `garp_master_refresh`: periodic batches | keepalived | `keepalived_garp_master_refresh_repeats` |
//! | 68 | `vrrp_min_garp`: one message, no second batch | keepalived | `keepalived_min_garp_sends_one_message` |
//! | 69 | GARP spacing: `garp_interval` (v4), `gna_interval` (v6) | keepalived | `keepalived_gratuitous_spacing_per_family` |
//! | 70 | Reload as Master: no flap, no re-GARP | PROTOCOL (SIGHUP) | `reload_as_master_keeps_state_without_regarp` |
//! | 71 | Reload with changed VIPs: only the difference | PROTOCOL (SIGHUP) | `reload_changed_vips_updates_only_difference` |
//! | 72 | Invalid reload refused, old config kept | design | `reload_invalid_config_is_rejected` |
//! | 73 | Reload with new priority re-arms the backup's down timer | design | `reload_priority_change_rearms_down_timer` |
//! | 74 | Sync group: one Fault → all Fault | keepalived `vrrp_sync_group` | `keepalived_sync_group_fault_propagates` |
//! | 75 | Sync group: recovery together | keepalived `vrrp_sync_group` | `keepalived_sync_group_recovers_together` |
//! | 76 | Sync group: one Master → Backup → all Backup | keepalived `vrrp_sync_group` | `keepalived_sync_group_backup_propagates` |
//! | 77 | Sync group: Master only when all members can | keepalived `vrrp_sync_group` | `keepalived_sync_group_master_only_when_all_can` |
//! | 78 | Sync group: group notifies on group state changes | keepalived `vrrp_sync_group` | `keepalived_sync_group_notifies` |
//! | 79 | More addresses than the datapath carries: counted from the header, those carried must be ours | design (up to 255 VIPs) | `large_advert_counted_from_header_and_carried_addresses_checked` |
//! | 80 | Lower-priority adverts re-announce the VIPs at most once per advert interval | design (no storm in a one-way partition) | `lower_priority_reannounce_at_most_once_per_interval` |
//! | 81 | Master, a VIP claimed by another MAC: re-announce it at once, at most once per advert interval; not Master: ignore | design (conflict guard) | `conflict_master_reannounces_once_per_interval` |
//! | 82 | Master, one advert interval after a re-announce: ask whether the VIP was claimed again meanwhile (those claims were not answered); such a claim is answered then — the owner has the last word, still at most once per interval | design (conflict guard) | `conflict_claims_inside_the_interval_are_checked_when_it_ends` |
//! | 83 | Backup: the datapath may keep a master's repeated advert from the agent only while a repeat would do nothing but re-arm the down timer (priority ≥ ours, or `nopreempt` without `preempt_delay`; not priority 0, not as Master) | design (backups sleep) | `quiet_master_only_while_a_repeat_only_rearms_the_down_timer` |
//! | 84 | Backup, the accepted master heard again (a repeat timed by the datapath): re-arm the down timer from its receive time; older news, or a master our priority now preempts, changes nothing | design (backups sleep) | `heard_master_rearms_down_timer_like_its_advert` |
//! | 85 | Master, advert timer handled up to 1/8 interval early (adverts of instances falling due together go out in one wake-up): send, and the cadence moves to now | design (masters batch) | `advert_timer_handled_early_within_an_eighth_of_the_interval_joins_the_batch` |
//! | 86 | `garp_extra_if`: while master, one GARP/NA for each VIP on another interface, periodically (first after `garp_master_delay` plus one period) | keepalived | `keepalived_garp_extra_if_announces_other_interfaces_periodically` |

mod config;
mod router;
mod sync;
mod track;
mod tracked;
mod types;

#[cfg(test)]
mod tests;

pub use config::{
    ConfigError, ConfigWarning, Family, GarpConfig, InitialState, NS_PER_CS, NS_PER_S,
    PRIORITY_OWNER, PRIORITY_STOP, RouterConfig, TrackerConfig, TrackerKind, master_down_ns,
    skew_ns,
};
pub use router::Router;
pub use sync::{SyncAction, SyncGroup, SyncGroupError};
pub use track::{Contribution, contribution, effective};
pub use tracked::{TrackState, TrackerId};
pub use types::{
    Action, AdvertMeta, DiscardReason, Event, Input, QuietMaster, Reason, ReceivedAdvert, State,
    TimerKind, Transition,
};
