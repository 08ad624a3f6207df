{{- /* Names, labels and fragments shared by the chart's templates. */}}

{{- /* The chart's name, or nameOverride: the app.kubernetes.io/name label. */}}
{{- define "sluice.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- /* The prefix of namespaced object names, as `helm create`'s: the release name when it already holds
       the chart's name (release "sluice": sluice-agent, sluice-operator), <release>-<name> otherwise.
       40 characters at most (the schema's limit for the overrides too) so that "-operator" and the
       Deployment's pod suffixes stay within the 63 of a label value. */}}
{{- define "sluice.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "sluice.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- /* Cluster-scoped objects have no namespace to tell two releases apart: the release's namespace is
       part of their name (<fullname>-<namespace>-agent). RBAC names are path segments, not DNS labels,
       so no 63-character limit applies. */}}
{{- define "sluice.clusterName" -}}
{{- printf "%s-%s" (include "sluice.fullname" .) .Release.Namespace -}}
{{- end -}}

{{- define "sluice.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- /* The standard labels of every object (Kubernetes' recommended labels and Helm's chart label). */}}
{{- define "sluice.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "sluice.instanceLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sluice
{{- end -}}

{{- /* What tells a release's objects apart: Services and ServiceMonitors select with these and the
       component. */}}
{{- define "sluice.instanceLabels" -}}
app.kubernetes.io/name: {{ include "sluice.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- /* Workload selectors: name and component only, as the chart's first release had them, because a
       Deployment's and a DaemonSet's selector is immutable and adding the instance would make
       `helm upgrade` from it fail. Releases in different namespaces never select each other's pods
       (selectors are namespaced); the pods carry the instance label too, for the Services. */}}
{{- define "sluice.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sluice.name" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- /* The API server's address when the kubernetes Service is not to be used (values k8sServiceHost/Port). */}}
{{- define "sluice.apiServerEnv" -}}
{{- if .Values.k8sServiceHost }}
- name: KUBERNETES_SERVICE_HOST
  value: {{ .Values.k8sServiceHost | quote }}
- name: KUBERNETES_SERVICE_PORT
  value: {{ .Values.k8sServicePort | default "443" | quote }}
{{- end }}
{{- end -}}

{{- /* The daemons' HTTP server (/metrics, /healthz, /readyz: operator/src/observe/server.ts) is there
       unless the port is 0 or the image predates it (image.legacy). */}}
{{- define "sluice.serves" -}}
{{- if and (not .root.Values.image.legacy) (gt (int .port) 0) }}true{{ end -}}
{{- end -}}

{{- /* The observability flags of a daemon (operator/src/observe: server.ts --metrics-addr, log.ts
       --log-level, --log-format); none for an image older than them. */}}
{{- define "sluice.observeArgs" -}}
{{- if not .root.Values.image.legacy -}}
- --metrics-addr={{ if gt (int .values.metrics.port) 0 }}:{{ .values.metrics.port }}{{ else }}0{{ end }}
- --log-level={{ .values.logLevel }}
- --log-format={{ .values.logFormat }}
{{- end -}}
{{- end -}}

{{- /* Port and probes of a daemon's HTTP server. The pods are on the host network, so kubelet probes
       the node's address, where the server listens (":<port>", every address). startupProbe gives a
       first start (BPF load, datapath migration, first list of every watched resource) up to 5
       minutes before liveness counts; liveness (/healthz) restarts a stuck process (event loop
       blocked); readiness (/readyz) reports when it serves (caches synced, datapath loaded). */}}
{{- define "sluice.probes" -}}
{{- $serves := include "sluice.serves" . -}}
{{- $monitor := and (not .root.Values.image.legacy) (gt (int (.monitorPort | default 0)) 0) -}}
{{- if or $serves $monitor }}
ports:
{{- end }}
{{- if $serves }}
  # hostNetwork: the port is also a host port, so the scheduler never puts two pods binding it on
  # one node.
  - { name: metrics, containerPort: {{ .values.metrics.port }}, protocol: TCP }
{{- end }}
{{- if $monitor }}
  # The agent's monitor (sluice monitor): bound on the node's loopback only, reached through the
  # API server's pods/portforward; named so that the CLI finds its number.
  - { name: monitor, containerPort: {{ .monitorPort }}, protocol: TCP }
{{- end }}
{{- if $serves }}
startupProbe:
  httpGet: { path: /healthz, port: metrics }
  periodSeconds: 2
  timeoutSeconds: 5
  failureThreshold: 150
livenessProbe:
  httpGet: { path: /healthz, port: metrics }
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 6
readinessProbe:
  httpGet: { path: /readyz, port: metrics }
  periodSeconds: 5
  timeoutSeconds: 5
  failureThreshold: 3
{{- end -}}
{{- end -}}
