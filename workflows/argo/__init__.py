"""Argo Workflows: manifests rendered from a plan (``render``, pure), with resources per step class
(``resources``) and schedule checks (``cron``)."""
