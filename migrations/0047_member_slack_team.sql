-- A Slack member id is unique within a workspace, not across workspaces: a member may pin the workspace (team id)
-- their Slack member id belongs to, and a Slack button pressed in another workspace then does not act as them.
alter table public.member_notification_settings
    add column slack_team_id text check (slack_team_id ~ '^[TE][A-Z0-9]{2,20}$');
