"""Shadow traffic: the candidate side runs aside and its answers are compared with the primary's."""
