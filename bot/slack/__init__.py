"""Everything that speaks Slack: the Web API gateway, Bolt request plumbing, Block Kit builders, command text."""
