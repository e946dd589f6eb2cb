"""The AMQP 0-9-1 (RabbitMQ) driver, on aio-pika."""
