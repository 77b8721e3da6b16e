{{/*
Names and labels shared by every resource of the chart.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "shoal.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of resource names: fullnameOverride, else RELEASE-NAME, else just
RELEASE when it already contains the name. 63 characters, the limit of a DNS
label (Service names and label values).
*/}}
{{- define "shoal.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Chart name and version, as the helm.sh/chart label. */}}
{{- define "shoal.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels that select the release's pods. They must never change between
releases: a StatefulSet's selector is immutable.
*/}}
{{- define "shoal.selectorLabels" -}}
app.kubernetes.io/name: {{ include "shoal.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels on every resource. */}}
{{- define "shoal.labels" -}}
helm.sh/chart: {{ include "shoal.chart" . }}
{{ include "shoal.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: shoal
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The node image reference. */}}
{{- define "shoal.image" -}}
{{- $img := .Values.image }}
{{- if $img.digest }}
{{- printf "%s@%s" $img.repository $img.digest }}
{{- else }}
{{- printf "%s:%s" $img.repository ($img.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* The ServiceAccount the nodes run as. */}}
{{- define "shoal.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- .Values.serviceAccount.name | default (include "shoal.fullname" .) }}
{{- else }}
{{- .Values.serviceAccount.name | default "default" }}
{{- end }}
{{- end }}

{{/*
Where the node finds its files. The config file names these paths; the
Deployment mounts the Secrets there.
*/}}
{{- define "shoal.paths" -}}
config: /etc/shoal/config/shoal.conf
tls: /etc/shoal/tls
passwd: /etc/shoal/auth/passwd
acl: /etc/shoal/auth/acl
redisTls: /etc/shoal/redis-tls
kafkaTls: /etc/shoal/kafka-tls
kafkaSasl: /etc/shoal/kafka-sasl
{{- end }}

{{/* Secret names: the user's existingSecret or the chart's own. */}}
{{- define "shoal.tlsSecret" -}}
{{- .Values.tls.existingSecret | default (printf "%s-tls" (include "shoal.fullname" .)) }}
{{- end }}
{{- define "shoal.passwdSecret" -}}
{{- .Values.auth.passwordFile.existingSecret | default (printf "%s-auth" (include "shoal.fullname" .)) }}
{{- end }}
{{- define "shoal.aclSecret" -}}
{{- .Values.auth.acl.existingSecret | default (printf "%s-auth" (include "shoal.fullname" .)) }}
{{- end }}
{{- define "shoal.adminSecret" -}}
{{- .Values.admin.existingSecret | default (printf "%s-admin" (include "shoal.fullname" .)) }}
{{- end }}
{{- define "shoal.redisSecret" -}}
{{- .Values.redis.existingSecret | default (printf "%s-redis" (include "shoal.fullname" .)) }}
{{- end }}
{{- define "shoal.redisTlsSecret" -}}
{{- .Values.redis.tls.existingSecret | default (printf "%s-redis-tls" (include "shoal.fullname" .)) }}
{{- end }}

{{- define "shoal.kafkaTlsSecret" -}}
{{- .Values.kafka.tls.existingSecret | default (printf "%s-kafka-tls" (include "shoal.fullname" .)) }}
{{- end }}
{{- define "shoal.kafkaSaslSecret" -}}
{{- .Values.kafka.sasl.existingSecret | default (printf "%s-kafka" (include "shoal.fullname" .)) }}
{{- end }}

{{/* "true" when each feature is on (templates compare strings). */}}
{{- define "shoal.hasPasswd" -}}
{{- if or .Values.auth.passwordFile.existingSecret .Values.auth.passwordFile.content }}true{{ end }}
{{- end }}
{{- define "shoal.hasAcl" -}}
{{- if or .Values.auth.acl.existingSecret .Values.auth.acl.content }}true{{ end }}
{{- end }}
{{- define "shoal.hasAdmin" -}}
{{- if or .Values.admin.existingSecret .Values.admin.token }}true{{ end }}
{{- end }}
{{- define "shoal.hasRedisPassword" -}}
{{- if and (not .Values.redis.inRelease.enabled) (or .Values.redis.existingSecret .Values.redis.password) }}true{{ end }}
{{- end }}
{{- define "shoal.hasRedisTls" -}}
{{- if and (not .Values.redis.inRelease.enabled) .Values.redis.tls.enabled }}true{{ end }}
{{- end }}
{{- define "shoal.hasRedisTlsFiles" -}}
{{- $t := .Values.redis.tls }}
{{- if and (include "shoal.hasRedisTls" .) (or $t.existingSecret $t.ca $t.cert) }}true{{ end }}
{{- end }}

{{- define "shoal.hasKafkaTlsFiles" -}}
{{- $t := .Values.kafka.tls }}
{{- if and $t.enabled (or $t.existingSecret $t.ca $t.cert) }}true{{ end }}
{{- end }}
{{- define "shoal.kafkaSecurityProtocol" -}}
{{- $k := .Values.kafka }}
{{- if $k.sasl.enabled }}{{ ternary "sasl_ssl" "sasl_plaintext" $k.tls.enabled }}
{{- else }}{{ ternary "ssl" "plaintext" $k.tls.enabled }}{{ end }}
{{- end }}

{{/* Redis host:port and Kafka bootstrap list, in-release ones first. */}}
{{- define "shoal.redisHostPort" -}}
{{- if .Values.redis.inRelease.enabled }}
{{- printf "%s-redis:6379" (include "shoal.fullname" . | trunc 57 | trimSuffix "-") }}
{{- else if .Values.redis.host }}
{{- printf "%s:%d" .Values.redis.host (int .Values.redis.port) }}
{{- end }}
{{- end }}
{{- define "shoal.kafkaBrokers" -}}
{{- if .Values.kafka.inRelease.enabled }}
{{- printf "%s-kafka:9092" (include "shoal.fullname" . | trunc 57 | trimSuffix "-") }}
{{- else }}
{{- .Values.kafka.brokers }}
{{- end }}
{{- end }}

{{/* The Redis URL without its password (that one comes from a Secret). */}}
{{- define "shoal.redisUrl" -}}
{{- $hp := include "shoal.redisHostPort" . }}
{{- if $hp }}
{{- printf "%s://%s/%d" (ternary "rediss" "redis" (eq (include "shoal.hasRedisTls" .) "true")) $hp (int .Values.redis.db) }}
{{- end }}
{{- end }}

{{/* The rendered shoal.conf; the ConfigMap holds it, its hash rolls the pods. */}}
{{- define "shoal.config" -}}
{{- $p := include "shoal.paths" . | fromYaml }}
{{- $v := .Values }}
{{- $c := dict }}
{{- $_ := set $c "bind" "0.0.0.0" }}
{{- $_ := set $c "port" $v.ports.mqtt }}
{{- $_ := set $c "http-bind" "0.0.0.0" }}
{{- $_ := set $c "http-port" $v.ports.http }}
{{- $_ := set $c "workers" $v.config.workers }}
{{- $_ := set $c "log-level" $v.config.logLevel }}
{{- $_ := set $c "log-format" $v.config.logFormat }}
{{- $_ := set $c "max-connections" $v.config.maxConnections }}
{{- if gt (int $v.config.clusterLease) 0 }}
{{- $_ := set $c "cluster-lease" $v.config.clusterLease }}
{{- end }}
{{- /* The node's own bound; terminationGracePeriodSeconds covers it (deployment.yaml). */}}
{{- $_ := set $c "drain-timeout" $v.drain.timeoutSeconds }}
{{- $_ := set $c "drain-rate" $v.drain.rate }}
{{- with $v.drain.serverReference }}
{{- $_ := set $c "server-reference" . }}
{{- end }}
{{- if $v.websocket.enabled }}
{{- $_ := set $c "ws-port" $v.ports.ws }}
{{- $_ := set $c "ws-path" $v.websocket.path }}
{{- with $v.websocket.origins }}
{{- $_ := set $c "ws-origins" (join "," .) }}
{{- end }}
{{- end }}
{{- if $v.tls.enabled }}
{{- $_ := set $c "tls-port" $v.ports.mqtts }}
{{- if $v.websocket.enabled }}
{{- $_ := set $c "wss-port" $v.ports.wss }}
{{- end }}
{{- $_ := set $c "tls-cert" (printf "%s/%s" $p.tls $v.tls.certKey) }}
{{- $_ := set $c "tls-key" (printf "%s/%s" $p.tls $v.tls.keyKey) }}
{{- if or $v.tls.ca (and $v.tls.existingSecret $v.tls.requireClientCert) }}
{{- $_ := set $c "tls-ca" (printf "%s/%s" $p.tls $v.tls.caKey) }}
{{- end }}
{{- $_ := set $c "tls-require-client-cert" $v.tls.requireClientCert }}
{{- $_ := set $c "tls-cert-as-username" $v.tls.certAsUsername }}
{{- $_ := set $c "tls-min-version" $v.tls.minVersion }}
{{- with $v.tls.ciphers }}
{{- $_ := set $c "tls-ciphers" . }}
{{- end }}
{{- end }}
{{- $pp := $v.proxyProtocol }}
{{- if or (ne $pp.mqtt "off") (ne $pp.mqtts "off") (ne $pp.ws "off") (ne $pp.wss "off") }}
{{- $_ := set $c "proxy-protocol" (printf "mqtt=%s,mqtts=%s,ws=%s,wss=%s" $pp.mqtt $pp.mqtts $pp.ws $pp.wss) }}
{{- if not $pp.trusted }}
{{- fail "proxyProtocol.trusted: list the load balancers' addresses or CIDRs the PROXY header may come from (0.0.0.0/0 and ::/0 accept any source)" }}
{{- end }}
{{- $_ := set $c "proxy-trusted" (join "," $pp.trusted) }}
{{- end }}
{{- if include "shoal.hasPasswd" . }}
{{- $_ := set $c "password-file" (printf "%s/%s" $p.passwd $v.auth.passwordFile.key) }}
{{- end }}
{{- if include "shoal.hasAcl" . }}
{{- $_ := set $c "acl-file" (printf "%s/%s" $p.acl $v.auth.acl.key) }}
{{- end }}
{{- if not (kindIs "invalid" $v.auth.allowAnonymous) }}
{{- $_ := set $c "allow-anonymous" $v.auth.allowAnonymous }}
{{- end }}
{{- $url := include "shoal.redisUrl" . }}
{{- if and $url (not (include "shoal.hasRedisPassword" .)) }}
{{- $_ := set $c "redis" $url }}
{{- end }}
{{- if include "shoal.hasRedisTlsFiles" . }}
{{- if or $v.redis.tls.existingSecret $v.redis.tls.ca }}
{{- $_ := set $c "redis-tls-ca" (printf "%s/ca.crt" $p.redisTls) }}
{{- end }}
{{- if or $v.redis.tls.cert (and $v.redis.tls.existingSecret $v.redis.tls.clientCert) }}
{{- $_ := set $c "redis-tls-cert" (printf "%s/tls.crt" $p.redisTls) }}
{{- $_ := set $c "redis-tls-key" (printf "%s/tls.key" $p.redisTls) }}
{{- end }}
{{- end }}
{{- with include "shoal.kafkaBrokers" . }}
{{- $_ := set $c "kafka" . }}
{{- end }}
{{- $_ := set $c "kafka-topic-prefix" $v.kafka.topicPrefix }}
{{- $_ := set $c "kafka-partitions" $v.kafka.partitions }}
{{- $_ := set $c "kafka-replication" $v.kafka.replicationFactor }}
{{- $_ := set $c "kafka-acks" $v.kafka.acks }}
{{- $_ := set $c "kafka-linger-ms" $v.kafka.lingerMs }}
{{- $proto := include "shoal.kafkaSecurityProtocol" . }}
{{- if ne $proto "plaintext" }}
{{- $_ := set $c "kafka-security-protocol" $proto }}
{{- end }}
{{- if include "shoal.hasKafkaTlsFiles" . }}
{{- if or $v.kafka.tls.existingSecret $v.kafka.tls.ca }}
{{- $_ := set $c "kafka-tls-ca" (printf "%s/ca.crt" $p.kafkaTls) }}
{{- end }}
{{- if or $v.kafka.tls.cert (and $v.kafka.tls.existingSecret $v.kafka.tls.clientCert) }}
{{- $_ := set $c "kafka-tls-cert" (printf "%s/tls.crt" $p.kafkaTls) }}
{{- $_ := set $c "kafka-tls-key" (printf "%s/tls.key" $p.kafkaTls) }}
{{- end }}
{{- end }}
{{- if $v.kafka.sasl.enabled }}
{{- $_ := set $c "kafka-sasl-mechanism" $v.kafka.sasl.mechanism }}
{{- $_ := set $c "kafka-sasl-username" $v.kafka.sasl.username }}
{{- $_ := set $c "kafka-sasl-password-file" (printf "%s/%s" $p.kafkaSasl $v.kafka.sasl.existingSecretPasswordKey) }}
{{- end }}
{{- range $k, $val := $v.config.extra }}
{{- if or (hasKey $c $k) (has $k (list "config" "node-id" "advertise" "admin-token" "metrics-auth" "cluster-lease")) }}
{{- fail (printf "config.extra.%s: the chart sets %s itself (see values.yaml)" $k $k) }}
{{- end }}
{{- $_ := set $c $k $val }}
{{- end }}
# shoal.conf, rendered by the shoal Helm chart: "key value" lines, the node's
# options without the leading --. The environment (SHOAL_NODE_ID,
# SHOAL_ADVERTISE, SHOAL_ADMIN_TOKEN, SHOAL_REDIS with a password) wins over
# this file. `shoal --check-config FILE` checks it.
{{- range $k := keys $c | sortAlpha }}
{{- $val := get $c $k }}
{{ $k }} {{ if kindIs "float64" $val }}{{ $val | int64 }}{{ else }}{{ $val }}{{ end }}
{{- end }}
{{- end }}
