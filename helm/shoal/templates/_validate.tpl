{{/*
Combinations the schema cannot express; each fails the render with the value
to change.
*/}}
{{- define "shoal.validate" -}}
{{- $v := .Values }}
{{- $clustered := and (include "shoal.redisHostPort" .) (include "shoal.kafkaBrokers" .) }}
{{- if and (include "shoal.redisHostPort" .) (not (include "shoal.kafkaBrokers" .)) }}
{{- fail "redis.host is set but kafka.brokers is empty: a cluster needs both (neither: a single node)" }}
{{- end }}
{{- if and (include "shoal.kafkaBrokers" .) (not (include "shoal.redisHostPort" .)) }}
{{- fail "kafka.brokers is set but redis.host is empty: a cluster needs both (neither: a single node)" }}
{{- end }}
{{- if and (not $clustered) (or (gt (int $v.replicaCount) 1) $v.autoscaling.enabled) }}
{{- fail "more than one node (replicaCount > 1 or autoscaling.enabled) needs Redis and Kafka: set redis.host and kafka.brokers, or use values-dev.yaml" }}
{{- end }}
{{- $lease := int $v.config.clusterLease }}
{{- $beat := int (index $v.config.extra "cluster-heartbeat" | default 1000) }}
{{- if and (gt $lease 0) (lt $lease (mul 3 $beat)) }}
{{- fail (printf "config.clusterLease: 0 (3 heartbeats) or at least 3 x cluster-heartbeat (%d ms), not %d" (mul 3 $beat) $lease) }}
{{- end }}
{{- if and $v.kafka.inRelease.enabled (gt (int $v.kafka.replicationFactor) 1) }}
{{- fail "kafka.inRelease runs one broker: set kafka.replicationFactor to 1 (values-dev.yaml does)" }}
{{- end }}
{{- if $v.tls.enabled }}
{{- if and (not $v.tls.existingSecret) (or (not $v.tls.cert) (not $v.tls.key)) }}
{{- fail "tls.enabled needs tls.existingSecret or both tls.cert and tls.key" }}
{{- end }}
{{- if and $v.tls.requireClientCert (not $v.tls.existingSecret) (not $v.tls.ca) }}
{{- fail "tls.requireClientCert needs tls.ca (or tls.existingSecret with the CA under tls.caKey)" }}
{{- end }}
{{- end }}
{{- if and $v.redis.tls.enabled (not $v.redis.tls.existingSecret) (ne (not $v.redis.tls.cert) (not $v.redis.tls.key)) }}
{{- fail "redis.tls.cert and redis.tls.key go together" }}
{{- end }}
{{- $k := $v.kafka }}
{{- if and $k.inRelease.enabled (or $k.tls.enabled $k.sasl.enabled) }}
{{- fail "kafka.inRelease runs a PLAINTEXT Kafka: kafka.tls.enabled and kafka.sasl.enabled are for your own Kafka" }}
{{- end }}
{{- if and (or $k.tls.enabled $k.sasl.enabled) (not (include "shoal.kafkaBrokers" .)) }}
{{- fail "kafka.tls.enabled and kafka.sasl.enabled need kafka.brokers" }}
{{- end }}
{{- if and $k.tls.enabled (not $k.tls.existingSecret) (ne (not $k.tls.cert) (not $k.tls.key)) }}
{{- fail "kafka.tls.cert and kafka.tls.key go together" }}
{{- end }}
{{- if and $k.sasl.enabled (not $k.sasl.username) }}
{{- fail "kafka.sasl.enabled needs kafka.sasl.username" }}
{{- end }}
{{- if and $k.sasl.enabled (not $k.sasl.existingSecret) (not $k.sasl.password) }}
{{- fail "kafka.sasl.enabled needs kafka.sasl.password or kafka.sasl.existingSecret" }}
{{- end }}
{{- if and $v.autoscaling.enabled (lt (int $v.autoscaling.maxReplicas) (int $v.autoscaling.minReplicas)) }}
{{- fail "autoscaling.maxReplicas is below autoscaling.minReplicas" }}
{{- end }}
{{- if and $v.autoscaling.enabled (kindIs "invalid" $v.autoscaling.targetCPUUtilizationPercentage) (not $v.autoscaling.connections.enabled) }}
{{- fail "autoscaling.enabled needs a metric: targetCPUUtilizationPercentage or connections.enabled" }}
{{- end }}
{{- end }}
