"""Face recognition with FaceNet and Amazon Rekognition, in AWS or fully offline."""
