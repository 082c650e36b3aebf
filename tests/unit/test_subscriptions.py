"""How shared.runtime.kafka.subscribe wires a topic: the delivery rules that would silently break the mission if
FastStream's defaults crept back (commit before processing, a new group starting at `latest`), one consumer
group per subscription whose commits are the lanes' (not FastStream's), and the fetch wait of the binding
path versus the occasional topics."""

from faststream import AckPolicy

from shared.contracts.routing import Party, Topic
from shared.runtime.config import VaultWriterSettings
from shared.runtime.kafka import EventPublisher, make_broker, subscribe
from shared.runtime.lanes import LanedSubscription


async def no_outcome(event, *, at):
    return []


def subscribers_of(settings, *topics):
    broker = make_broker(settings, settings.service_name)
    publisher = EventPublisher(broker, settings.topic_prefix, Party(settings.service_name))
    for topic in topics:
        subscribe(broker, settings, topic, no_outcome, no_outcome, publisher)
    return {subscriber.topics[0].name: subscriber for subscriber in broker.subscribers}


def test_each_subscription_has_its_own_group_reads_from_the_beginning_and_leaves_commits_to_its_lanes():
    settings = VaultWriterSettings(kafka_group_suffix="-blue")
    subscribers = subscribers_of(settings, Topic.BINDING_VALIDATED, Topic.BINDING_REVOKE_REQUESTED)
    validated = subscribers["hash7.binding.validated"]
    revoke = subscribers["hash7.binding.revoke-requested"]
    assert (validated.group_id, revoke.group_id) == ("vault-writer-blue.binding.validated",
                                                       "vault-writer-blue.binding.revoke-requested")
    for subscriber in (validated, revoke):
        assert subscriber._connection_args["auto_offset_reset"] == "earliest"
        assert subscriber._connection_args["enable_auto_commit"] is False
        # FastStream commits nothing (its default commits before handling); the lanes commit behind the work.
        assert subscriber.ack_policy is AckPolicy.MANUAL
        assert isinstance(subscriber._listener, LanedSubscription)
        assert subscriber.max_records == settings.kafka_max_records_in_hand


def test_the_binding_path_is_polled_often_and_occasional_topics_ten_times_less():
    settings = VaultWriterSettings(kafka_fetch_max_wait_ms=40, kafka_occasional_fetch_max_wait_ms=400)
    subscribers = subscribers_of(settings, Topic.BINDING_VALIDATED, Topic.BINDING_REVOKE_REQUESTED)
    assert subscribers["hash7.binding.validated"]._connection_args["fetch_max_wait_ms"] == 40
    assert subscribers["hash7.binding.revoke-requested"]._connection_args["fetch_max_wait_ms"] == 400
