from worker_service import start

if __name__ == "__main__":  # not when the process pool's children import the main module
    start()
