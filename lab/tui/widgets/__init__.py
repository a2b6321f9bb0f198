"""The lab's panes: each module renders one part of the screen from a StateView or events."""
