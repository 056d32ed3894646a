{{- define "gatehouse.name" -}}{{ .Chart.Name }}{{- end -}}
{{- define "gatehouse.fullname" -}}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- define "gatehouse.labels" -}}
app.kubernetes.io/name: {{ include "gatehouse.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}
{{- define "gatehouse.selector" -}}
app.kubernetes.io/name: {{ include "gatehouse.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
{{- define "gatehouse.secretName" -}}{{ .Values.secrets.existingSecret | default (include "gatehouse.fullname" .) }}{{- end -}}
{{/* The configuration file: the user's config plus what the chart owns. */}}
{{- define "gatehouse.config" -}}
{{- $cfg := deepCopy .Values.config -}}
{{- $_ := set $cfg "listen" (printf "0.0.0.0:%v" .Values.ports.public) -}}
{{- $_ := set $cfg "admin_listen" (printf "0.0.0.0:%v" .Values.ports.admin) -}}
{{- $session := get $cfg "session" | default dict -}}
{{- if eq .Values.redis.mode "none" -}}
{{- $_ := set $session "store" "bolt" -}}
{{- else -}}
{{- $_ := set $session "store" "redis" -}}
{{- $r := dict -}}
{{- if eq .Values.redis.mode "standalone" -}}
{{- $_ := set $r "url" (required "redis.url is required for redis.mode standalone" .Values.redis.url) -}}
{{- else if eq .Values.redis.mode "sentinel" -}}
{{- $_ := set $r "addrs" (required "redis.addrs is required for redis.mode sentinel" .Values.redis.addrs) -}}
{{- $_ := set $r "master_name" (required "redis.masterName is required for redis.mode sentinel" .Values.redis.masterName) -}}
{{- else if eq .Values.redis.mode "cluster" -}}
{{- $_ := set $r "addrs" (required "redis.addrs is required for redis.mode cluster" .Values.redis.addrs) -}}
{{- else -}}
{{- fail (printf "redis.mode %q: want standalone, sentinel, cluster or none" .Values.redis.mode) -}}
{{- end -}}
{{- if .Values.redis.passwordKey -}}
{{- $_ := set $r "password" (printf "${file:/run/secrets/gatehouse/%s}" .Values.redis.passwordKey) -}}
{{- end -}}
{{- $_ := set $session "redis" $r -}}
{{- end -}}
{{- $_ := set $cfg "session" $session -}}
{{- toYaml $cfg -}}
{{- end -}}
