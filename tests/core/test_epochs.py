"""The epoch and lease rules (rmi_kv.core.epochs), with a fake clock: plain numbers of seconds."""
import pytest

from rmi_kv.core.epochs import (CLOCK_RATE, MARGIN, Epoch, EpochVoter, Lease, Refusal, Vote, accepts_transaction,
                                majority, plan_epoch)

FIVE = [f"r{i}" for i in range(1, 6)]
LEASE = 1.0


def voters(epoch, names=FIVE):
    return {name: EpochVoter(epoch, LEASE) for name in names}


def test_a_majority_is_counted_of_the_configured_replicas():
    assert majority(FIVE) == 3 and majority(FIVE[:4]) == 3 and majority(FIVE[:3]) == 2


def test_a_participant_takes_only_its_current_epochs_transactions():
    current = Epoch.of(4, ["r1", "r2", "r3"])
    assert accepts_transaction(current, "r1", 4)
    assert not accepts_transaction(current, "r1", 3)  # a late message of the old epoch
    assert not accepts_transaction(current, "r4", 4)  # not a member


# ------------------------------------------------------------------ leases
def test_a_lease_runs_from_when_the_renewal_was_sent_and_needs_a_majority():
    lease = Lease(LEASE)
    lease.renewed(10.0, ["r1", "r2"], FIVE)
    assert not lease.valid(10.1)  # two grants of five: no lease
    lease.renewed(10.0, ["r1", "r2", "r3"], FIVE)
    assert lease.valid(10.99) and not lease.valid(11.0)


def test_a_late_grant_never_moves_a_lease_back():
    lease = Lease(LEASE)
    lease.renewed(20.0, FIVE, FIVE)
    lease.renewed(19.0, FIVE, FIVE)  # the answer to an older renewal arrives late
    assert lease.expires == 21.0


def test_a_voter_waits_out_every_lease_it_granted_to_a_replica_left_out():
    group = voters(Epoch.of(1, FIVE))
    for voter in group.values():
        assert voter.grant("r5", 1, now=100.0)
    proposal = Epoch.of(2, FIVE[:4])
    owed = 100.0 + LEASE * (1 + CLOCK_RATE) + MARGIN
    refused = group["r1"].vote(proposal, now=owed - 0.001)
    assert isinstance(refused, Refusal) and refused.retry_after == pytest.approx(0.001)
    assert group["r1"].vote(proposal, now=owed) == Vote(Epoch.of(1, FIVE))


def test_the_holder_stops_reading_before_any_voter_may_leave_it_out():
    """L2 with clocks inside the assumption: the holder's lease ends (its clock)
    before the owed wait ends (the voter's clock), even when the holder's clock
    runs CLOCK_RATE slower and the grant was made the moment the renewal left."""
    sent = 50.0
    holder = Lease(LEASE)
    holder.renewed(sent, FIVE[:3], FIVE)
    voter = EpochVoter(Epoch.of(1, FIVE), LEASE)
    voter.grant("r5", 1, now=sent)  # real time sent; both clocks read `sent` then
    voter_clock_when_free = voter.owed_until("r5")
    real_seconds = voter_clock_when_free - sent  # the voter's clock runs at true rate
    holder_clock_then = sent + real_seconds / (1 + CLOCK_RATE)  # the holder's runs slower
    assert not holder.valid(holder_clock_then)


def test_a_clock_at_half_speed_is_outside_the_assumption_and_reads_would_go_stale():
    sent = 50.0
    holder = Lease(LEASE)
    holder.renewed(sent, FIVE[:3], FIVE)
    voter = EpochVoter(Epoch.of(1, FIVE), LEASE)
    voter.grant("r5", 1, now=sent)
    real_seconds = voter.owed_until("r5") - sent
    holder_clock_then = sent + real_seconds * 0.5
    assert holder.valid(holder_clock_then)  # why README states the clock-rate bound


def test_no_lease_is_granted_to_a_non_member_nor_to_one_a_vote_left_out():
    voter = EpochVoter(Epoch.of(3, ["r1", "r2", "r3"]), LEASE)
    assert not voter.grant("r4", 3, now=1.0)
    assert not voter.grant("r1", 2, now=1.0)
    assert isinstance(voter.vote(Epoch.of(4, ["r1", "r2", "r4"]), now=1.0), Vote)
    assert voter.grant("r1", 3, now=1.1)  # still a member after the change: its reads go on
    assert not voter.grant("r3", 3, now=1.1)  # left out of the epoch voted for: no new lease


def test_a_restarted_voter_waits_a_full_lease_before_leaving_anyone_out():
    voter = EpochVoter(Epoch.of(3, FIVE), LEASE)
    voter.restarted(FIVE, now=10.0)  # it forgot whom it granted what before the crash
    owed = 10.0 + LEASE * (1 + CLOCK_RATE) + MARGIN
    assert isinstance(voter.vote(Epoch.of(4, FIVE[:3]), now=owed - 0.01), Refusal)
    assert isinstance(voter.vote(Epoch.of(4, FIVE), now=10.0), Vote)  # leaving nobody out needs no wait


def test_a_vote_fences_the_current_epoch():
    voter = EpochVoter(Epoch.of(3, FIVE), LEASE)
    assert voter.takes_transaction("r1", 3)
    voter.vote(Epoch.of(4, FIVE[:4]), now=0.0)
    assert not voter.takes_transaction("r1", 3)  # F: the epoch voted for may be installed without this write
    assert not voter.takes_transaction("r1", 4)  # not installed here yet
    voter.install(Epoch.of(4, FIVE[:4]))
    assert voter.takes_transaction("r1", 4) and not voter.takes_transaction("r5", 4)


# ------------------------------------------------------------------ epochs
def test_a_voter_votes_once_per_number_and_only_upwards():
    voter = EpochVoter(Epoch.of(2, FIVE), LEASE)
    assert isinstance(voter.vote(Epoch.of(3, FIVE[:4]), now=0.0), Vote)
    assert isinstance(voter.vote(Epoch.of(3, FIVE[1:]), now=0.0), Refusal)  # same number, other members
    assert isinstance(voter.vote(Epoch.of(2, FIVE), now=0.0), Refusal)
    assert isinstance(voter.vote(Epoch.of(5, FIVE[:3]), now=0.0), Vote)


def test_two_proposals_of_one_number_cannot_both_get_a_majority():
    group = voters(Epoch.of(1, FIVE))
    first, second = Epoch.of(2, FIVE[:3]), Epoch.of(2, FIVE[2:])
    yes_first = {name for name in FIVE[:3] if isinstance(group[name].vote(first, now=0.0), Vote)}
    yes_second = {name for name in FIVE[2:] if isinstance(group[name].vote(second, now=0.0), Vote)}
    assert yes_first == set(FIVE[:3]) and yes_second == {"r4", "r5"}  # r3 voted already
    assert plan_epoch(second, {name: Vote(Epoch.of(1, FIVE)) for name in yes_second}, FIVE) is None


def test_the_next_epoch_copies_from_a_member_of_the_latest_one():
    latest, old = Epoch.of(7, ["r1", "r2", "r3"]), Epoch.of(6, FIVE)
    proposal = Epoch.of(8, ["r3", "r4", "r5"])
    plan = plan_epoch(proposal, {"r3": Vote(latest), "r4": Vote(old), "r5": Vote(old)}, FIVE)
    assert plan.epoch == proposal and plan.source == "r3" and plan.newcomers == {"r4", "r5"}


def test_stale_replicas_cannot_form_an_epoch_that_loses_the_current_ones_writes():
    """Epoch 7 = r1, r2, r3 wrote on; r1 and r2 are down and r3 is still
    catching up in it: r3, r4, r5 hold no complete copy of epoch 7's writes."""
    latest, old = Epoch.of(7, ["r1", "r2", "r3"]), Epoch.of(6, FIVE)
    proposal = Epoch.of(8, ["r3", "r4", "r5"])
    votes = {"r3": Vote(latest, complete=False), "r4": Vote(old), "r5": Vote(old)}
    assert plan_epoch(proposal, votes, FIVE) is None
    # had r3 never installed epoch 7, no write could have committed in it (E2): epoch 6's copy is complete
    assert plan_epoch(proposal, {"r4": Vote(old), "r5": Vote(old), "r3": Vote(old)}, FIVE).source == "r3"


def test_an_epoch_needs_a_majority_of_the_configured_replicas_not_of_its_members():
    latest = Epoch.of(3, ["r1", "r2", "r3"])
    assert plan_epoch(Epoch.of(4, ["r1", "r2"]), {"r1": Vote(latest), "r2": Vote(latest)}, FIVE) is None
    assert plan_epoch(Epoch.of(4, ["r1", "r2"]), {name: Vote(latest) for name in ["r1", "r2", "r3"]},
                      FIVE) is None  # two members are no majority of five


def test_a_late_install_of_an_older_epoch_changes_nothing():
    voter = EpochVoter(Epoch.of(2, FIVE), LEASE)
    voter.vote(Epoch.of(4, FIVE[:4]), now=0.0)
    assert not voter.install(Epoch.of(3, FIVE[:3]))  # it voted for 4: it waits for that one, or a later one
    assert voter.fenced and not voter.takes_transaction("r1", 2)
    assert voter.install(Epoch.of(4, FIVE[:4])) and voter.current.number == 4 and not voter.fenced
    assert not voter.install(Epoch.of(3, FIVE[:3]))


def test_every_member_of_a_new_epoch_must_have_voted_for_it():
    latest = Epoch.of(3, FIVE)
    votes = {name: Vote(latest) for name in FIVE[:3]}
    assert plan_epoch(Epoch.of(4, FIVE[:4]), votes, FIVE) is None  # r4 did not say what it holds
    assert plan_epoch(Epoch.of(4, FIVE[:3]), votes, FIVE).newcomers == frozenset()


def test_a_member_reporting_an_older_epoch_or_incomplete_data_copies_again():
    """r3 missed epoch 4's install, r2 never finished copying: both empty their
    data and copy from a complete member of epoch 4."""
    latest = Epoch.of(4, FIVE[:4])
    votes = {"r1": Vote(latest), "r2": Vote(latest, complete=False), "r3": Vote(Epoch.of(3, FIVE)),
             "r4": Vote(latest)}
    plan = plan_epoch(Epoch.of(5, FIVE[:4]), votes, FIVE)
    assert plan.source == "r1" and plan.newcomers == {"r2", "r3"}


def test_epoch_zero_is_the_whole_member_list_and_its_complete_members_keep_their_data():
    view = Epoch.of(0, FIVE)  # each replica reports its own member list as epoch 0
    votes = {"r1": Vote(view), "r2": Vote(view), "r3": Vote(view, complete=False)}
    plan = plan_epoch(Epoch.of(1, FIVE[:3]), votes, FIVE)
    assert plan.source == "r1" and plan.newcomers == {"r3"}
