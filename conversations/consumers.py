"""The WebSocket consumer: one method per client frame and per server event."""

from channels.generic.websocket import AsyncJsonWebsocketConsumer


class ConversationConsumer(AsyncJsonWebsocketConsumer):
    pass
