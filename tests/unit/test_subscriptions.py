"""How shared.runtime.kafka.subscribe wires a topic: the delivery rules that would silently break the mission if
FastStream's defaults crept back (commit before processing, a new group starting at `latest`), one consumer
group per subscription whose commits are the lanes' (not FastStream's), and the fetch wait of the binding
path versus the occasional topics."""

from faststream import AckPolicy

from shared.runtime.config import IntakeSettings
from shared.contracts.events import BindingRequested, RevokeRequested
from shared.contracts.routing import Topic
from shared.runtime.kafka import EventPublisher, make_broker, subscribe
from shared.runtime.lanes import LanedSubscription


async def no_outcome(event, *, at):
    return []


def subscribers_of(settings, *topics_and_models):
    broker = make_broker(settings, settings.service_name)
    publisher = EventPublisher(broker, settings.topic_prefix)
    for topic, model in topics_and_models:
        subscribe(broker, settings, topic, model, no_outcome, no_outcome, publisher)
    return {subscriber.topics[0].name: subscriber for subscriber in broker.subscribers}


def test_each_subscription_has_its_own_group_reads_from_the_beginning_and_leaves_commits_to_its_lanes():
    settings = IntakeSettings(kafka_group_suffix="-blue")
    subscribers = subscribers_of(settings, (Topic.BINDING_REQUESTED, BindingRequested),
                                 (Topic.BINDING_REVOKE_REQUESTED, RevokeRequested))
    requested = subscribers["hash7.binding.requested"]
    revoke = subscribers["hash7.binding.revoke-requested"]
    assert (requested.group_id, revoke.group_id) == ("intake-blue.binding.requested",
                                                      "intake-blue.binding.revoke-requested")
    for subscriber in (requested, revoke):
        assert subscriber._connection_args["auto_offset_reset"] == "earliest"
        assert subscriber._connection_args["enable_auto_commit"] is False
        # FastStream commits nothing (its default commits before handling); the lanes commit behind the work.
        assert subscriber.ack_policy is AckPolicy.MANUAL
        assert isinstance(subscriber._listener, LanedSubscription)
        assert subscriber.max_records == settings.kafka_max_records_in_hand


def test_the_binding_path_is_polled_often_and_occasional_topics_ten_times_less():
    settings = IntakeSettings(kafka_fetch_max_wait_ms=40, kafka_occasional_fetch_max_wait_ms=400)
    subscribers = subscribers_of(settings, (Topic.BINDING_REQUESTED, BindingRequested),
                                 (Topic.BINDING_REVOKE_REQUESTED, RevokeRequested))
    assert subscribers["hash7.binding.requested"]._connection_args["fetch_max_wait_ms"] == 40
    assert subscribers["hash7.binding.revoke-requested"]._connection_args["fetch_max_wait_ms"] == 400
