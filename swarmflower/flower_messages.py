"""Flower `Message`s built outside a ServerApp.

Flower fills a message's metadata from the running server's identity; a swarm
site (and a baseline) calls `ClientApp`s and strategies directly, so it states
the metadata itself.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, Metadata, RecordDict
from flwr.app import MessageType as FlowerMessageType

DEFAULT_TTL = 3600.0
TRAIN = FlowerMessageType.TRAIN
EVALUATE = FlowerMessageType.EVALUATE


def instruction(
    content: RecordDict,
    message_type: str,
    *,
    dst_node_id: int,
    src_node_id: int = 0,
    run_id: int = 0,
    message_id: str = "",
) -> Message:
    """A message as a ServerApp would send it to node `dst_node_id`."""
    metadata = Metadata(
        run_id=run_id,
        message_id=message_id or f"{message_type}-{dst_node_id}-{time.monotonic_ns()}",
        src_node_id=src_node_id,
        dst_node_id=dst_node_id,
        reply_to_message_id="",
        group_id="",
        created_at=time.time(),
        ttl=DEFAULT_TTL,
        message_type=message_type,
    )
    return Message(content=content, metadata=metadata)


def model_instruction(
    arrays: ArrayRecord,
    message_type: str,
    server_round: int,
    *,
    dst_node_id: int,
    config: dict[str, int | float | str | bool] | None = None,
) -> Message:
    """A train or evaluate instruction carrying a model, as Flower builds them."""
    record = ConfigRecord({**(config or {}), "server-round": server_round})
    content = RecordDict({"arrays": arrays, "config": record})
    return instruction(content, message_type, dst_node_id=dst_node_id)


def site_context(
    site: int,
    num_sites: int,
    run_id: int = 0,
    run_config: Mapping[str, bool | float | int | str] | None = None,
    node_config: Mapping[str, bool | float | int | str] | None = None,
) -> Context:
    """The `Context` Flower's simulation engine gives partition `site`: the run
    config, `partition-id` and `num-partitions` plus any keys the site
    declares, and a `state` of its own (keep the object to keep the state
    across rounds, as Flower does)."""
    return Context(
        run_id=run_id,
        node_id=site + 1,
        node_config={
            "partition-id": site,
            "num-partitions": num_sites,
            **dict(node_config or {}),
        },
        state=RecordDict(),
        run_config=dict(run_config or {}),
    )
