"""On-call schedules: rotation layers with restrictions, overrides, and the final timeline of who is on call
(time zones and daylight-saving changes through zoneinfo). See docs/oncall.md."""
