"""Tasks from the talk: sequential navigation and locomotion + manipulation (registered here)."""
