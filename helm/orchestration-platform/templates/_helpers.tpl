{{/* Names, labels and the pieces every pod shares. */}}

{{- define "dagster.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "dagster.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "dagster.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every object; pass (list $ "component"). */}}
{{- define "dagster.labels" -}}
{{- $ := index . 0 -}}
helm.sh/chart: {{ include "dagster.chart" $ }}
app.kubernetes.io/managed-by: {{ $.Release.Service }}
app.kubernetes.io/version: {{ $.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: orchestration-platform
{{ include "dagster.selectorLabels" . }}
{{- end -}}

{{- define "dagster.selectorLabels" -}}
{{- $ := index . 0 -}}
app.kubernetes.io/name: {{ include "dagster.name" $ }}
app.kubernetes.io/instance: {{ $.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* With serviceAccount.create=false and no name, pods use the namespace's `default` ServiceAccount:
naming one the chart does not create left every ReplicaSet unable to create its pods. */}}
{{- define "dagster.serviceAccountName" -}}
{{- $created := ternary (include "dagster.fullname" .) "default" .Values.serviceAccount.create -}}
{{- default $created .Values.global.serviceAccountName -}}
{{- end -}}

{{- define "dagster.trainingServiceAccountName" -}}
{{- $created := ternary (printf "%s-training" (include "dagster.fullname" .)) "default" .Values.serviceAccount.create -}}
{{- default $created .Values.training.serviceAccountName -}}
{{- end -}}

{{- define "dagster.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository .Values.image.tag -}}
{{- end -}}
{{- end -}}

{{- define "dagster.webserverUrl" -}}
{{- printf "%s-webserver" (include "dagster.fullname" .) -}}
{{- end -}}

{{- define "dagster.modelServingName" -}}
{{- printf "%s-model-serving" (include "dagster.fullname" .) -}}
{{- end -}}

{{- define "dagster.platformEnvConfigMap" -}}
{{- printf "%s-platform-env" (include "dagster.fullname" .) -}}
{{- end -}}

{{- define "dagster.workspaceConfigMap" -}}
{{- printf "%s-workspace-yaml" (include "dagster.fullname" .) -}}
{{- end -}}

{{- define "dagster.instanceConfigMap" -}}
{{- printf "%s-instance" (include "dagster.fullname" .) -}}
{{- end -}}

{{- define "dagster.userDeploymentName" -}}
{{- $ := index . 0 -}}
{{- printf "%s-%s" (include "dagster.fullname" $) (index . 1).name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's code servers as host names, in workspace order. */}}
{{- define "dagster.codeServerHosts" -}}
{{- $ := . -}}
{{- range $deployment := (index .Values "dagster-user-deployments").deployments }}
- {{ include "dagster.userDeploymentName" (list $ $deployment) }}
{{- end }}
{{- end -}}

{{- define "dagster.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext -}}
{{- end -}}

{{- define "dagster.securityContext" -}}
{{- toYaml .Values.securityContext -}}
{{- end -}}

{{/* The Dagster instance's PostgreSQL password, from the existing Secret (never a value). */}}
{{- define "dagster.postgresqlPasswordEnv" -}}
- name: DAGSTER_PG_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.global.postgresqlSecretName }}
      key: postgresql-password
{{- end -}}

{{/* The platform's settings: plain values from the ConfigMap, credentials from the Secret. */}}
{{- define "dagster.platformEnvFrom" -}}
- configMapRef:
    name: {{ include "dagster.platformEnvConfigMap" . }}
- secretRef:
    name: {{ .Values.platform.existingSecret }}
{{- end -}}

{{- define "dagster.dataVolume" -}}
- name: platform-data
{{- if .Values.platform.dataVolume.existingClaim }}
  persistentVolumeClaim:
    claimName: {{ .Values.platform.dataVolume.existingClaim }}
{{- else }}
  emptyDir:
    sizeLimit: {{ .Values.platform.dataVolume.emptyDirSizeLimit }}
{{- end }}
{{- end -}}

{{/* Pods roll when the instance, workspace or platform settings change. */}}
{{- define "dagster.configChecksums" -}}
checksum/dagster-instance: {{ include (print .Template.BasePath "/configmap-instance.yaml") . | sha256sum }}
checksum/dagster-workspace: {{ include (print .Template.BasePath "/configmap-workspace.yaml") . | sha256sum }}
checksum/platform-env: {{ include (print .Template.BasePath "/configmap-env-platform.yaml") . | sha256sum }}
{{- end -}}

{{/* exec probe for the code server; pass (list probeValues port). */}}
{{- define "dagster.grpcProbe" -}}
{{- $probe := omit (index . 0 | default dict) "exec" -}}
{{- $port := index . 1 -}}
exec:
  command: ["dagster", "api", "grpc-health-check", "-p", "{{ $port }}"]
{{- if $probe }}
{{ toYaml $probe }}
{{- else }}
periodSeconds: 20
timeoutSeconds: 10
failureThreshold: 3
{{- end }}
{{- end -}}
