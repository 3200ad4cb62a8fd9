{{/* Names, labels and the rendered lasched configuration. */}}

{{- define "lasched.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "lasched.fullname" -}}
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

{{- define "lasched.agentFullname" -}}
{{- printf "%s-agent" (include "lasched.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The headless Service that lists every ready scheduler replica (agent.fanOut). */}}
{{- define "lasched.replicasServiceName" -}}
{{- printf "%s-replicas" (include "lasched.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The agents' scheduler URL: every replica through the headless Service, or the Service. */}}
{{- define "lasched.agentSchedulerUrl" -}}
{{- if .Values.agent.fanOut -}}
{{- printf "ws://%s.%s.svc:%v/agents/v1" (include "lasched.replicasServiceName" .) .Release.Namespace .Values.scheduler.port -}}
{{- else -}}
{{- printf "ws://%s.%s.svc:%v/agents/v1" (include "lasched.fullname" .) .Release.Namespace .Values.service.port -}}
{{- end -}}
{{- end -}}

{{- define "lasched.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "lasched.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "lasched.schedulerSelectorLabels" -}}
app.kubernetes.io/name: {{ include "lasched.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: scheduler
{{- end -}}

{{- define "lasched.agentSelectorLabels" -}}
app.kubernetes.io/name: {{ include "lasched.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: agent
{{- end -}}

{{- define "lasched.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "lasched.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "lasched.agentServiceAccountName" -}}
{{- if .Values.agent.serviceAccount.create -}}
{{- default (include "lasched.agentFullname" .) .Values.agent.serviceAccount.name -}}
{{- else -}}
{{- required "agent.serviceAccount.name is required when agent.serviceAccount.create is false" .Values.agent.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "lasched.leaseName" -}}
{{- default (include "lasched.fullname" .) .Values.scheduler.leaderElection.resourceName -}}
{{- end -}}

{{- define "lasched.image" -}}
{{- printf "%s:%s" .image.repository (default .appVersion .image.tag) -}}
{{- end -}}

{{/* The agent's effective group: root's with raw sockets. */}}
{{- define "lasched.agentGroup" -}}
{{- if .Values.agent.rawSockets -}}0{{- else -}}{{ int .Values.agent.runAsGroup }}{{- end -}}
{{- end -}}

{{/* The Pod Security level the chart's pods meet (for the Namespace's labels). */}}
{{- define "lasched.podSecurityLevel" -}}
{{- if and .Values.agent.enabled (or .Values.agent.hostNetwork .Values.agent.rawSockets) -}}
privileged
{{- else -}}
restricted
{{- end -}}
{{- end -}}

{{/*
The lasched configuration (docs/configuration.md): `config`, plus the fields
the chart owns because other objects depend on them.
*/}}
{{- define "lasched.config" -}}
{{- $cfg := deepCopy (.Values.config | default dict) -}}
{{- range $key := list "profiles" "leaderElection" "extender" "kubeconfig" "preemption" "remediation" -}}
{{- if hasKey $cfg $key -}}
{{- fail (printf "config.%s is set by the chart; use the values documented in the chart's README" $key) -}}
{{- end -}}
{{- end -}}
{{- $_ := set $cfg "profiles" .Values.profiles -}}
{{- $le := .Values.scheduler.leaderElection -}}
{{- $_ := set $cfg "leaderElection" (dict
      "leaderElect" $le.leaderElect
      "resourceName" (include "lasched.leaseName" .)
      "resourceNamespace" .Release.Namespace
      "leaseDurationSeconds" $le.leaseDurationSeconds
      "renewDeadlineSeconds" $le.renewDeadlineSeconds
      "retryPeriodSeconds" $le.retryPeriodSeconds) -}}
{{- $server := deepCopy (get $cfg "server" | default dict) -}}
{{- if hasKey $server "port" -}}
{{- fail "config.server.port is set by the chart; use scheduler.port" -}}
{{- end -}}
{{- $_ := set $server "port" (int .Values.scheduler.port) -}}
{{- $_ := set $cfg "server" $server -}}
{{- $_ := set $cfg "extender" (dict "enabled" .Values.extender.enabled "urlPrefix" .Values.extender.urlPrefix) -}}
{{- $_ := set $cfg "preemption" (dict "enabled" .Values.preemption.enabled) -}}
{{- $_ := set $cfg "remediation" (deepCopy .Values.remediation) -}}
{{- $latency := deepCopy (get $cfg "latency" | default dict) -}}
{{- if hasKey $latency "topology" -}}
{{- fail "config.latency.topology is set by the chart; use the topology values documented in the chart's README" -}}
{{- end -}}
{{- $_ := set $latency "topology" (deepCopy .Values.topology) -}}
{{- if .Values.agent.enabled -}}
{{- if hasKey $latency "agentServiceAccounts" -}}
{{- fail "config.latency.agentServiceAccounts is set by the chart (the agent's ServiceAccount) while agent.enabled is true" -}}
{{- end -}}
{{- $_ := set $latency "agentServiceAccounts" (list (printf "%s/%s" .Release.Namespace (include "lasched.agentServiceAccountName" .))) -}}
{{- end -}}
{{- $_ := set $cfg "latency" $latency -}}
{{- toYaml $cfg -}}
{{- end -}}
