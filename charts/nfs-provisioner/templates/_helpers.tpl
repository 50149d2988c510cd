{{/* The name of every object; "nfs-provisioner" by default, as deploy/. */}}
{{- define "nfs-provisioner.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object: deploy/'s one, plus Helm's bookkeeping. */}}
{{- define "nfs-provisioner.labels" -}}
app.kubernetes.io/name: {{ include "nfs-provisioner.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Selector labels: deploy/'s, unchanged, so both select the same pods. */}}
{{- define "nfs-provisioner.selectorLabels" -}}
app.kubernetes.io/name: {{ include "nfs-provisioner.name" . }}
{{- end -}}

{{- define "nfs-provisioner.lease" -}}
{{- .Values.provisionerName | replace "/" "-" -}}
{{- end -}}

{{- define "nfs-provisioner.class" -}}
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: {{ .class.name }}
  labels:
    {{- include "nfs-provisioner.labels" .root | nindent 4 }}
provisioner: {{ .root.Values.provisionerName }}
{{- with .class.parameters }}
parameters:
  {{- range $k, $v := . }}
  {{ $k }}: {{ $v | toString | quote }}
  {{- end }}
{{- end }}
reclaimPolicy: {{ .class.reclaimPolicy | default "Delete" }}
volumeBindingMode: {{ .class.volumeBindingMode | default "Immediate" }}
allowVolumeExpansion: {{ .class.allowVolumeExpansion | default false }}
{{- with .class.mountOptions }}
mountOptions:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
