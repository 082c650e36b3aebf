"""`hash7-admin kafka-acls`: the Kafka ACLs the routing table grants each party's user in this deployment (its topic
prefix and consumer-group suffix), as the bootstrap applies them (deploy/bootstrap/kafka_acls.py). It reads and
changes nothing on the broker: it shows what a reviewer checks the broker against (`kafka-acls.sh --list`)."""

from itertools import groupby

from rich import box
from rich.table import Table

from deploy.admin import cli
from deploy.admin.identity import load_settings
from deploy.bootstrap.kafka_acls import granted
from shared.clients.console import JSON, output_format, print_json_line, stdout


@cli.command("kafka-acls")
def kafka_acls() -> None:
    """Print the Kafka ACLs the routing table grants: one row per user, resource and its operations."""
    settings = load_settings()
    grants = sorted(granted(settings.topic_prefix, settings.kafka_group_suffix))
    rows = [(principal, resource, name, [grant.operation.value for grant in same])
            for (principal, resource, name), same in groupby(grants, lambda g: (g.principal, g.resource, g.name))]
    if output_format() == JSON:
        for principal, resource, name, operations in rows:
            print_json_line({"principal": principal, "resource_type": resource.value, "resource_name": name,
                             "pattern": "LITERAL", "permission": "ALLOW", "host": "*", "operations": operations})
        return
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, header_style="bold", pad_edge=False)
    for header in ("Principal", "Resource", "Name", "Operations"):
        table.add_column(header)
    for principal, resource, name, operations in rows:
        table.add_row(principal, resource.value, name, ", ".join(operations))
    stdout.print(table)
