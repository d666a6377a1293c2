"""GetStats through server reflection, with no .proto file and none of the
generated stubs: what grpcurl does, in Python."""

from __future__ import annotations

import grpc
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.json_format import MessageToDict
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase


def test_get_stats_through_reflection(server, client):
    client.get_or_none("reflection-warm-up")  # at least one SessionService call
    with grpc.insecure_channel(server.target) as channel:
        reflection = ProtoReflectionDescriptorDatabase(channel)
        services = reflection.get_services()
        assert "sessiond.v1.AdminService" in services and "sessiond.v1.SessionService" in services

        pool = descriptor_pool.DescriptorPool(reflection)  # its own pool: no generated code involved
        method = pool.FindServiceByName("sessiond.v1.AdminService").FindMethodByName("GetStats")
        request_cls = message_factory.GetMessageClass(method.input_type)
        response_cls = message_factory.GetMessageClass(method.output_type)
        get_stats = channel.unary_unary(
            "/sessiond.v1.AdminService/GetStats",
            request_serializer=request_cls.SerializeToString,
            response_deserializer=response_cls.FromString,
        )
        stats = MessageToDict(get_stats(request_cls(), timeout=5), preserving_proto_field_name=True)

    assert stats["instance_id"] == client.stats().instance_id
    assert stats["store_backend"] == "embedded"
    assert stats["version"]
    rpcs = {r["method"]: r for r in stats["rpcs"]}
    assert int(rpcs["GetSession"]["calls"]) >= 1
    for section in ("cache", "locks", "store"):
        assert section in stats, f"GetStats has {section}"
