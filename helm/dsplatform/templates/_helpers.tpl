{{/* Names, labels, images and secrets shared by the templates. */}}

{{- define "dsplatform.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's base name; objects are "<fullname>-<component>" (<= 63 characters). */}}
{{- define "dsplatform.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "dsplatform.hub" -}}{{ include "dsplatform.fullname" . }}-hub{{- end }}
{{- define "dsplatform.proxyPublic" -}}{{ include "dsplatform.fullname" . }}-proxy-public{{- end }}
{{- define "dsplatform.proxyApi" -}}{{ include "dsplatform.fullname" . }}-proxy-api{{- end }}
{{- define "dsplatform.proxy" -}}{{ include "dsplatform.fullname" . }}-proxy{{- end }}
{{- define "dsplatform.mlflow" -}}{{ include "dsplatform.fullname" . }}-mlflow{{- end }}
{{- define "dsplatform.serving" -}}{{ include "dsplatform.fullname" . }}-serving{{- end }}
{{- define "dsplatform.postgresql" -}}{{ include "dsplatform.fullname" . }}-postgresql{{- end }}
{{- define "dsplatform.sharedStorage" -}}
{{- .Values.sharedStorage.existingClaim | default (printf "%s-dsdata" (include "dsplatform.fullname" .)) }}
{{- end }}

{{- define "dsplatform.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object; call with (dict "root" $ "component" "hub"). */}}
{{- define "dsplatform.labels" -}}
helm.sh/chart: {{ include "dsplatform.chart" .root }}
{{ include "dsplatform.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: dsplatform
{{- end }}

{{- define "dsplatform.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dsplatform.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* The labels KubeSpawner puts on sandbox pods (c.KubeSpawner.common_labels + component). */}}
{{- define "dsplatform.sandboxSelector" -}}
app.kubernetes.io/name: {{ include "dsplatform.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: singleuser-server
{{- end }}

{{- /* Dask schedulers' and workers' pods (hub_ext/dask/kube_pods.py labels them) */ -}}
{{- define "dsplatform.daskSelector" -}}
matchLabels:
  app.kubernetes.io/name: {{ include "dsplatform.name" . }}
  app.kubernetes.io/instance: {{ .Release.Name }}
matchExpressions:
  - key: app.kubernetes.io/component
    operator: In
    values: [dask-scheduler, dask-worker]
{{- end }}

{{- define "dsplatform.hubImage" -}}
{{- printf "%s:%s" .Values.hub.image.name (.Values.hub.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{- define "dsplatform.mlflowImage" -}}
{{- if .Values.mlflow.image.name }}
{{- printf "%s:%s" .Values.mlflow.image.name (.Values.mlflow.image.tag | default .Chart.AppVersion) }}
{{- else }}
{{- include "dsplatform.hubImage" . }}
{{- end }}
{{- end }}

{{- define "dsplatform.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- range . }}
  - name: {{ . }}
  {{- end }}
{{- end }}
{{- end }}

{{/*
A secret value: the one given in values, else the one already in the cluster's Secret
(kept across upgrades), else a new random one. Call with
(list $ "<secret name>" "<key>" "<given value>" "alnum"|"hex").
*/}}
{{- define "dsplatform.secretValue" -}}
{{- $root := index . 0 }}
{{- $name := index . 1 }}
{{- $key := index . 2 }}
{{- $given := index . 3 }}
{{- $kind := index . 4 }}
{{- if $given }}
{{- $given }}
{{- else }}
{{- $existing := lookup "v1" "Secret" $root.Release.Namespace $name }}
{{- if and $existing $existing.data (hasKey $existing.data $key) }}
{{- index $existing.data $key | b64dec }}
{{- else if eq $kind "hex" }}
{{- randAlphaNum 64 | sha256sum }}
{{- else }}
{{- randAlphaNum 32 }}
{{- end }}
{{- end }}
{{- end }}

{{/* The PostgreSQL server's host name (the chart's own, or the external one). */}}
{{- define "dsplatform.postgresqlHost" -}}
{{- if .Values.postgresql.deploy }}
{{- include "dsplatform.postgresql" . }}
{{- else if .Values.postgresql.host }}
{{- .Values.postgresql.host }}
{{- else }}
{{- fail "postgresql.host is required when postgresql.deploy is false (the hub database or MLflow use PostgreSQL)" }}
{{- end }}
{{- end }}

{{- define "dsplatform.usesPostgresql" -}}
{{- if or (eq .Values.hub.db.type "postgresql") .Values.mlflow.enabled }}true{{ end }}
{{- end }}

{{/* The Secret and key that hold the PostgreSQL password. */}}
{{- define "dsplatform.postgresqlSecretName" -}}
{{- .Values.postgresql.existingSecret | default (include "dsplatform.postgresql" .) }}
{{- end }}

{{/* PGPASSWORD from the PostgreSQL Secret (libpq reads it; no password in any URL). */}}
{{- define "dsplatform.pgpasswordEnv" -}}
- name: PGPASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "dsplatform.postgresqlSecretName" . }}
      key: password
{{- end }}

{{- define "dsplatform.mlflowUrl" -}}
{{- if .Values.mlflow.enabled }}
{{- printf "http://%s:5000" (include "dsplatform.mlflow" .) }}
{{- else }}
{{- .Values.mlflow.externalUrl }}
{{- end }}
{{- end }}

{{/* The MLflow server's allowed Host headers (MLflow 3 refuses others: DNS rebinding). */}}
{{- define "dsplatform.mlflowAllowedHosts" -}}
{{- $svc := include "dsplatform.mlflow" . }}
{{- $ns := .Release.Namespace }}
{{- $hosts := list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) }}
{{- $all := list }}
{{- range $hosts }}
{{- $all = append $all . }}
{{- $all = append $all (printf "%s:5000" .) }}
{{- end }}
{{- $all = concat $all (list "localhost:*" "127.0.0.1:*") .Values.mlflow.extraAllowedHosts }}
{{- join "," $all }}
{{- end }}

{{/* Toolchain images and extra images for the pre-puller, without repeats. */}}
{{- define "dsplatform.prePullImages" -}}
{{- $images := list }}
{{- range $name, $toolchain := .Values.platform.toolchains }}
{{- if $toolchain.image }}
{{- $images = append $images $toolchain.image }}
{{- end }}
{{- end }}
{{- $images = concat $images .Values.prePuller.extraImages | uniq }}
{{- toJson $images }}
{{- end }}

{{- define "dsplatform.servingImage" -}}
{{- $image := .Values.catalog.serving.image }}
{{- if $image.name }}
{{- printf "%s:%s" $image.name ($image.tag | default .Chart.AppVersion) }}
{{- else }}
{{- include "dsplatform.hubImage" . }}
{{- end }}
{{- end }}
