"""The pure core of Support Inbox: order issues, their state machine, detection rules.

Imports only the standard library and ``eventsourcing.domain``; does no I/O and reads no
clock (time always comes in as an argument).
"""
