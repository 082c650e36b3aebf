#!/bin/bash
# The docker-compose.yml Kafka's entrypoint: SASL/SCRAM and ACLs on the official apache/kafka image, whose own scripts
# (docker/resources/common-scripts/run and docker/jvm/launch in apache/kafka) format the storage without any SCRAM
# credential and then start the broker. Before handing over to them, this:
#   1. formats the storage on first start with the super user `admin`'s SCRAM-SHA-512 credential
#      (`kafka-storage.sh format --add-scram`, KIP-900): with StandardAuthorizer and no ACL for anyone, a broker
#      formatted without it could never be administered. The image's own format then finds the storage formatted
#      and goes on.
#   2. gives the broker admin's credentials for its own connections (to itself on the BROKER listener over SCRAM,
#      to its controller over PLAIN, which KRaft controllers need because SCRAM credentials live in the metadata
#      the controller serves), as listener-prefixed sasl.jaas.config properties exported here, so the password is
#      never in the compose file or `docker inspect`.
#   3. writes the client properties the healthcheck (and `docker compose exec kafka`) authenticate with.
#
# The password comes from ADMIN_PASSWORD_FILE, written once by the kafka-init service. It is alphanumeric, so
# it needs no quoting in the JAAS lines. The one place it is on a command line is the first-start format's
# --add-scram argument (kafka-storage has no other way to take it), inside this container, for the second it runs.
set -euo pipefail
umask 077

: "${ADMIN_PASSWORD_FILE:?ADMIN_PASSWORD_FILE must name the admin password file (kafka-init writes it)}"
: "${KAFKA_LOG_DIRS:?KAFKA_LOG_DIRS must be set}"
: "${CLUSTER_ID:?CLUSTER_ID must be set}"
# docker-compose.yml's healthcheck reads it.
CLIENT_PROPERTIES=/opt/kafka/config/admin-client.properties

if [ ! -s "$ADMIN_PASSWORD_FILE" ]; then
    echo "compose-kafka-start: $ADMIN_PASSWORD_FILE is missing or empty: run the kafka-init service" >&2
    exit 1
fi
password=$(cat "$ADMIN_PASSWORD_FILE")
scram_login="org.apache.kafka.common.security.scram.ScramLoginModule required username=\"admin\" password=\"$password\";"

if [ ! -e "$KAFKA_LOG_DIRS/meta.properties" ]; then
    echo "compose-kafka-start: formatting $KAFKA_LOG_DIRS with the admin SCRAM credential"
    format_properties=$(mktemp)
    # The settings storage formatting reads; the image's configure script renders the full set afterwards.
    cat >"$format_properties" <<EOF
process.roles=$KAFKA_PROCESS_ROLES
node.id=$KAFKA_NODE_ID
controller.quorum.voters=$KAFKA_CONTROLLER_QUORUM_VOTERS
controller.listener.names=$KAFKA_CONTROLLER_LISTENER_NAMES
listeners=$KAFKA_LISTENERS
listener.security.protocol.map=$KAFKA_LISTENER_SECURITY_PROTOCOL_MAP
inter.broker.listener.name=$KAFKA_INTER_BROKER_LISTENER_NAME
log.dirs=$KAFKA_LOG_DIRS
EOF
    /opt/kafka/bin/kafka-storage.sh format --cluster-id "$CLUSTER_ID" --config "$format_properties" \
        --add-scram "SCRAM-SHA-512=[name=admin,password=$password]"
    rm -f "$format_properties"
fi

# listener.name.<listener>.<mechanism>.sasl.jaas.config, in the image's environment-variable spelling
# (apache/kafka docker/examples/README.md: "." -> "_", "-" -> "___").
export KAFKA_LISTENER_NAME_BROKER_SCRAM___SHA___512_SASL_JAAS_CONFIG="$scram_login"
export KAFKA_LISTENER_NAME_HOST_SCRAM___SHA___512_SASL_JAAS_CONFIG="$scram_login"
export KAFKA_LISTENER_NAME_CONTROLLER_PLAIN_SASL_JAAS_CONFIG="org.apache.kafka.common.security.plain.PlainLoginModule required username=\"admin\" password=\"$password\" user_admin=\"$password\";"

cat >"$CLIENT_PROPERTIES" <<EOF
security.protocol=SASL_PLAINTEXT
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=$scram_login
EOF
unset password scram_login

exec /etc/kafka/docker/run "$@"
